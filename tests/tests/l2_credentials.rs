//! The password of a Redis URL never shows: not in `Config`'s `Debug`, not in an install
//! error, not in anything logged through `tracing` (captured by the harness' own subscriber).

use std::net::TcpListener;

use cache_runtime::{cached, Config};
use integration_tests::logs::Logs;
use integration_tests::{serial, RedisServer};

const SECRET: &str = "s3cr3t-Pa55";

fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

#[test]
fn config_debug_masks_the_password() {
    let config = Config::new().redis(format!("redis://app:{SECRET}@127.0.0.1:6390/2"));
    let shown = format!("{config:?}");
    assert_hidden("Config's Debug", &shown);
    assert!(
        shown.contains("redis://app:***@127.0.0.1:6390/2"),
        "{shown}"
    );
    let unix = Config::new().redis(format!("redis+unix:///tmp/r.sock?db=1&pass={SECRET}"));
    assert_hidden("Config's Debug", &format!("{unix:?}"));
}

#[test]
fn an_invalid_url_error_masks_the_password() {
    let _guard = serial();
    let error = Config::new()
        .redis(format!("redis://app:{SECRET}@127.0.0.1:notaport/"))
        .install()
        .expect_err("the port is not a number");
    assert_hidden("the error's Display", &error.to_string());
    assert_hidden("the error's Debug", &format!("{error:?}"));
    assert!(error.to_string().contains("app:***@"), "{error}");
}

#[cached(ttl = 60)]
fn unreachable(n: u64) -> String {
    format!("unreachable computed {n}")
}

#[cached(ttl = 60)]
async fn unreachable_async(n: u64) -> String {
    format!("unreachable_async computed {n}")
}

#[cached(ttl = 60)]
fn denied(n: u64) -> String {
    format!("denied computed {n}")
}

/// Everything logged while calls fail against an unreachable server and against a server
/// whose user (logged in with the password) may not write.
#[test]
fn logs_never_show_the_password() {
    let _guard = serial();
    let logs = Logs::capture();
    logs.take();

    Config::new()
        .redis(format!("redis://app:{SECRET}@127.0.0.1:{}/", unused_port()))
        .install()
        .expect("an unreachable server is not an install error");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in 0..5 {
        unreachable(n);
        rt.block_on(unreachable_async(n));
    }

    let server = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(format!(">{SECRET}"))
        .arg("~*")
        .arg("+@all")
        .arg("-set")
        .query(&mut server.connection())
        .expect("ACL SETUSER");
    Config::new()
        .redis(format!(
            "redis://reader:{SECRET}@127.0.0.1:{}/",
            server.port()
        ))
        .install()
        .expect("the credentials are right");
    for n in 0..5 {
        denied(n);
    }
    assert_eq!(denied::stats().l2_errors, 5, "every SET was refused");

    let lines = logs.take();
    assert!(!lines.is_empty(), "nothing was logged");
    for line in &lines {
        assert_hidden("a log line", line);
    }
    Config::uninstall();
}
