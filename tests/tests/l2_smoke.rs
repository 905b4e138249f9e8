use cache_runtime::cached;
use integration_tests::with_redis;

#[cached(ttl = 60, name = "smoke::shared")]
fn writer(n: u64) -> String {
    format!("value {n}")
}

#[cached(ttl = 60, name = "smoke::shared")]
fn reader(n: u64) -> String {
    format!("recomputed {n}")
}

#[test]
fn l2_roundtrip() {
    let (_g, server) = with_redis("t");
    assert_eq!(writer(1), "value 1");
    assert_eq!((server.calls("get"), server.calls("set")), (1, 1));
    assert_eq!(reader(1), "value 1");
    assert_eq!(server.calls("get"), 2);
    assert_eq!(reader::stats().l2_hits, 1);
    assert_eq!(reader(1), "value 1");
    assert_eq!(server.calls("get"), 2);
    let keys = cache_runtime::preload([reader::key(2), writer::key(1)], || 0);
    let _ = keys;
    println!("{:?}", server.command_counts());
}
