//! Reading Redis' own counters (`INFO`) over one connection the test keeps, so that reading
//! them opens no connection of its own between two readings.

/// One numeric field of an `INFO` section (`total_connections_received` in `stats`,
/// `connected_clients` in `clients`, ...).
///
/// # Panics
///
/// When the field is missing or not a number.
pub fn field(conn: &mut redis::Connection, section: &str, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(conn).expect("INFO");
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no numeric `{name}` in INFO {section}:\n{info}"))
}

/// Connections the server accepted since it started (`INFO stats`).
pub fn connections_received(conn: &mut redis::Connection) -> u64 {
    field(conn, "stats", "total_connections_received")
}

/// One field (`calls`, `rejected_calls`, `failed_calls`) of one command (lowercase) in `INFO
/// commandstats`; 0 when the command never ran.
pub fn command_stat(conn: &mut redis::Connection, command: &str, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|fields| {
            fields.split(',').find_map(|field| {
                let (key, value) = field.split_once('=')?;
                (key == name).then(|| value.parse().ok())?
            })
        })
        .unwrap_or(0)
}
