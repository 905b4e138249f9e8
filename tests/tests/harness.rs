//! cache-runtime's Redis harness (`cache_runtime::testing::RedisServer`): it counts the
//! commands a server received without a client crate, resets the counts, restarts on the
//! same port, kills the server when dropped, and says how to install a missing binary.

use std::net::TcpStream;

use cache_runtime::testing::RedisServer;
use integration_tests::serial;

#[test]
fn counts_commands_resets_them_and_restarts_on_the_same_port() {
    let _serial = serial();
    let mut server = RedisServer::start();
    server.reset_stats();
    assert_eq!(server.command(&["SET", "k", "v"]).as_deref(), Ok("OK"));
    assert_eq!(server.command(&["GET", "k"]).as_deref(), Ok("v"));
    assert_eq!(server.command(&["GET", "k"]).as_deref(), Ok("v"));
    assert_eq!((server.calls("set"), server.calls("get")), (1, 2));
    assert!(server.command(&["NOSUCHCOMMAND"]).is_err());

    server.reset_stats();
    assert_eq!(server.calls("get"), 0);

    let port = server.port();
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(
        server.command(&["GET", "k"]).as_deref(),
        Ok(""),
        "empty after a restart"
    );
    assert_eq!(server.calls("get"), 1, "a new process counts from 0");
}

#[test]
fn dropping_the_handle_kills_the_server() {
    let _serial = serial();
    let server = RedisServer::start();
    let port = server.port();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(server);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_missing_binary_says_how_to_install_redis() {
    let _serial = serial();
    let previous = std::env::var_os("REDIS_SERVER");
    std::env::set_var("REDIS_SERVER", "/nonexistent/redis-server");
    let result = std::panic::catch_unwind(RedisServer::start);
    match previous {
        Some(binary) => std::env::set_var("REDIS_SERVER", binary),
        None => std::env::remove_var("REDIS_SERVER"),
    }
    let panic = result.err().expect("starting must fail");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        message.contains("apt-get install redis-server"),
        "{message}"
    );
    assert!(message.contains("$REDIS_SERVER"), "{message}");
}
