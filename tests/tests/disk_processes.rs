//! Processes sharing one disk store: at the same time, after one is killed, and under the
//! `lock` argument. Every process here is a `disk_peer`, on a directory of the test's own.

use std::io::{BufRead, BufReader};
use std::time::{SystemTime, UNIX_EPOCH};

use integration_tests::disk::{peer_command, peer_get, Peer, Report, TempDir, FILE_NAME};
use integration_tests::serial;

#[test]
fn two_processes_at_once_share_values_and_a_third_finds_them_all() {
    let _guard = serial();
    let dir = TempDir::new("two-at-once");
    let mut a = Peer::serve(dir.path());
    let mut b = Peer::serve(dir.path());
    // Both compute and write at the same time, 4 threads each.
    a.send("get 0 200");
    b.send("get 200 400");
    let (from_a, from_b) = (a.report(), b.report());
    assert_eq!((from_a.runs, from_a.l2_errors), (200, 0), "{from_a:?}");
    assert_eq!((from_b.runs, from_b.l2_errors), (200, 0), "{from_b:?}");

    // Each reads what the other wrote, while both have the file open.
    let a_reads = a.get(200, 400);
    let b_reads = b.get(0, 200);
    assert_eq!(
        (a_reads.runs, a_reads.l2_hits, a_reads.l2_errors),
        (200, 200, 0),
        "no body ran for the other's keys"
    );
    assert_eq!(a_reads.from(b.pid()), 200);
    assert_eq!(
        (b_reads.runs, b_reads.l2_hits, b_reads.l2_errors),
        (200, 200, 0)
    );
    assert_eq!(b_reads.from(a.pid()), 200);
    let (a_pid, b_pid) = (a.pid(), b.pid());
    a.exit();
    b.exit();

    let third = peer_get(dir.path(), 0, 400);
    assert_eq!((third.runs, third.l2_hits, third.l2_errors), (0, 400, 0));
    assert_eq!((third.from(a_pid), third.from(b_pid)), (200, 200));
}

#[test]
fn a_process_killed_right_after_a_call_returned_loses_none_of_its_values() {
    let _guard = serial();
    let dir = TempDir::new("sigkill");
    let mut child = peer_command(dir.path(), &["forever"])
        .spawn()
        .expect("start the writer");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut reported = 0;
    while reported < 300 {
        let line = lines.next().expect("a line").expect("utf-8");
        assert_eq!(line, format!("stored {reported}"));
        reported += 1;
    }
    // SIGKILL at once: no destructor, no checkpoint, no close.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let wal = std::fs::metadata(dir.path().join(format!("{FILE_NAME}-wal"))).map_or(0, |m| m.len());
    assert!(wal > 0, "the writes were in the WAL, not checkpointed");

    let next = peer_get(dir.path(), 0, reported);
    assert_eq!(
        (next.runs, next.l2_hits, next.l2_errors),
        (0, reported, 0),
        "every value the killed process reported is read back"
    );
    assert_eq!(next.from(pid), reported);
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn lock_runs_the_body_once_across_the_machines_processes() {
    let _guard = serial();
    let dir = TempDir::new("lock");
    // The store exists before the stampede (a first open creates the schema).
    assert_eq!(peer_get(dir.path(), 0, 1).runs, 1);
    let at = (unix_millis() + 1000).to_string();
    let peers: Vec<_> = (0..2)
        .map(|_| {
            peer_command(dir.path(), &["lock", "4", &at])
                .spawn()
                .expect("start a peer")
        })
        .collect();
    let reports: Vec<Report> = peers
        .into_iter()
        .map(|peer| {
            let output = peer.wait_with_output().expect("peer output");
            assert!(output.status.success());
            let text = String::from_utf8(output.stdout).expect("utf-8");
            Report::parse(text.trim())
        })
        .collect();
    let runs: u64 = reports.iter().map(|r| r.runs).sum();
    assert_eq!(runs, 1, "body runs per process: {reports:?}");
    assert!(reports.iter().all(|r| r.l2_errors == 0), "{reports:?}");
    let owner = reports
        .iter()
        .flat_map(|r| r.by.iter().map(|&(pid, _)| pid))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        owner.len(),
        1,
        "all 8 callers got the one value: {reports:?}"
    );
}
