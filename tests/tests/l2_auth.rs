//! A wrong password must not look healthy: `install()` tries one connection and returns an
//! error when the server answers and refuses the credentials (WRONGPASS, NOAUTH) or the db
//! index; an unreachable server stays fail-open, logged at `warn` once. Error replies that
//! will not go away (an ACL user denied SET: NOPERM) are logged at `warn` once per function
//! and kind of error, and still counted in `l2_errors` on every call.

use std::net::TcpListener;

use cache_runtime::{cached, Config, Error};
use integration_tests::logs::Logs;
use integration_tests::{serial, RedisServer};

const PASSWORD: &str = "the-right-pw-42";

fn config_set(admin: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(admin)
        .expect("CONFIG SET");
}

/// A server whose default user needs `PASSWORD`, and an admin connection opened before.
fn protected() -> (RedisServer, redis::Connection) {
    let server = RedisServer::start();
    let mut admin = server.connection();
    config_set(&mut admin, "requirepass", PASSWORD);
    (server, admin)
}

fn refused(url: String) -> String {
    match Config::new().redis(url).install() {
        Err(error @ Error::RedisRefused { .. }) => error.to_string(),
        other => panic!("expected Error::RedisRefused, got {other:?}"),
    }
}

#[test]
fn a_wrong_password_is_an_install_error() {
    let _guard = serial();
    let (server, _admin) = protected();
    let shown = refused(format!(
        "redis://default:not-it-77@127.0.0.1:{}/",
        server.port()
    ));
    assert!(shown.contains("WRONGPASS"), "{shown}");
    assert!(!shown.contains("not-it-77"), "{shown}");
}

#[test]
fn no_password_for_a_protected_server_is_an_install_error() {
    let _guard = serial();
    let (server, _admin) = protected();
    let shown = refused(server.url());
    assert!(shown.contains("NOAUTH"), "{shown}");
}

#[test]
fn a_db_index_the_server_lacks_is_an_install_error() {
    let _guard = serial();
    let server = RedisServer::start();
    let shown = refused(format!("redis://127.0.0.1:{}/99", server.port()));
    assert!(shown.contains("DB index"), "{shown}");
}

#[cached(ttl = 60)]
fn with_password(n: u64) -> String {
    format!("with_password computed {n}")
}

#[test]
fn the_right_password_installs_and_values_reach_redis() {
    let _guard = serial();
    let (server, mut admin) = protected();
    Config::new()
        .redis(format!("redis://:{PASSWORD}@127.0.0.1:{}/3", server.port()))
        .install()
        .expect("the right password");
    with_password(1);
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query(&mut admin)
        .expect("SELECT");
    let stored: bool = redis::cmd("EXISTS")
        .arg(with_password::key(1).to_string())
        .query(&mut admin)
        .expect("EXISTS");
    assert!(stored, "the value was not written to db 3");
    assert_eq!(with_password::stats().l2_errors, 0);
    Config::uninstall();
}

#[cached(ttl = 60)]
fn far_away(n: u64) -> String {
    format!("far_away computed {n}")
}

#[test]
fn an_unreachable_server_installs_and_warns_once() {
    let _guard = serial();
    let logs = Logs::capture();
    logs.take();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Config::new()
        .redis(format!("redis://127.0.0.1:{port}/"))
        .install()
        .expect("fail-open: an unreachable server is not an install error");
    for n in 0..10 {
        far_away(n);
    }
    let lines = logs.take();
    let warned: Vec<_> = lines
        .iter()
        .filter(|line| line.starts_with("WARN") && line.contains("not reachable"))
        .collect();
    assert_eq!(warned.len(), 1, "{lines:#?}");
    Config::uninstall();
}

#[cached(ttl = 60)]
fn denied_one(n: u64) -> String {
    format!("denied_one computed {n}")
}

#[cached(ttl = 60)]
fn denied_two(n: u64) -> String {
    format!("denied_two computed {n}")
}

#[test]
fn denied_writes_warn_once_per_function_and_are_all_counted() {
    let _guard = serial();
    let logs = Logs::capture();
    let server = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(format!(">{PASSWORD}"))
        .arg("~*")
        .arg("+@all")
        .arg("-set")
        .query(&mut server.connection())
        .expect("ACL SETUSER");
    Config::new()
        .redis(format!(
            "redis://reader:{PASSWORD}@127.0.0.1:{}/",
            server.port()
        ))
        .install()
        .expect("the credentials are right");
    logs.take();
    for n in 0..50 {
        denied_one(n);
        denied_two(n);
    }
    assert_eq!(denied_one::stats().l2_errors, 50);
    assert_eq!(denied_two::stats().l2_errors, 50);
    let lines = logs.take();
    for name in ["denied_one", "denied_two"] {
        let warned = lines
            .iter()
            .filter(|l| l.starts_with("WARN") && l.contains("NOPERM") && l.contains(name))
            .count();
        assert_eq!(warned, 1, "{name}: {lines:#?}");
    }
    Config::uninstall();
}
