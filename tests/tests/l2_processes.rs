//! Two processes share L2: a value computed by a child process (the `l2_process_child` helper
//! binary) is read by this one from Redis, without running this process' body.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use cache_runtime::cached;
use integration_tests::with_redis;

const PREFIX: &str = "processes";

/// The value a process computes: it names the process (the child's body says the same).
fn computed_by(pid: u32, n: u64) -> String {
    format!("computed by process {pid} for {n}")
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Same cache name as the child's function, so both use the same key.
#[cached(ttl = 60, name = "processes::shared")]
fn shared(n: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    computed_by(std::process::id(), n)
}

#[test]
fn a_value_computed_by_another_process_is_read_from_redis() {
    let (_guard, server) = with_redis(PREFIX);
    let child = Command::new(env!("CARGO_BIN_EXE_l2_process_child"))
        .args([server.url().as_str(), PREFIX, "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let child_pid = child.id();
    let output = child.wait_with_output().expect("child output");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let child_value = computed_by(child_pid, 7);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), child_value);
    assert_eq!(
        (server.calls("get"), server.calls("set")),
        (1, 1),
        "the child's miss"
    );

    assert_eq!(shared(7), child_value);
    assert_eq!(RUNS.load(SeqCst), 0, "this process' body never ran");
    assert_eq!(shared::stats().l2_hits, 1);
    assert_eq!((server.calls("get"), server.calls("set")), (2, 1));
}
