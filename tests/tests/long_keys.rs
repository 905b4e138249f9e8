//! Long arguments in the shared store's keys: past 250 encoded bytes a key keeps a readable
//! head and ends in the SHA-256 of the whole arguments (in-process layers keep them whole).

use cache_runtime::cached;

#[cached(ttl = 60, name = "keys::document")]
fn document_length(text: String) -> usize {
    text.len()
}

/// Arguments past 250 encoded bytes make a key of a readable head, `\#` and the SHA-256 of the
/// whole: a 100 kB argument is not a 100 kB Redis key, different long arguments keep different
/// keys, and the value round-trips through Redis under it.
#[test]
fn long_arguments_are_shortened_with_a_digest() {
    let (_guard, server) = integration_tests::with_redis("long-keys");
    let long = "x".repeat(100_000);
    let key = document_length::key(long.clone()).to_string();
    assert!(key.len() < 350, "{} bytes", key.len());
    let args = key.split_once(":v0:").expect("layout").1;
    assert!(args.starts_with(&"x".repeat(200)), "a readable head");
    let (head, digest) = args.split_once("\\#").expect("the digest marker");
    assert_eq!(head.len(), 200);
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut other = long.clone();
    other.push('y');
    assert_ne!(
        document_length::key(other.clone()),
        document_length::key(long.clone())
    );
    assert_ne!(
        document_length::key(other.clone()).to_string(),
        key,
        "the same head, another digest"
    );
    // At the limit nothing is shortened.
    let short = "z".repeat(250);
    assert!(document_length::key(short.clone())
        .to_string()
        .ends_with(&short));
    assert_eq!(document_length(long.clone()), 100_000);
    document_length::clear_local();
    server.reset_stats();
    assert_eq!(document_length(long), 100_000);
    assert_eq!(
        document_length::stats().l2_hits,
        1,
        "read back under the short key"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.connection())
        .expect("KEYS");
    assert!(keys.iter().all(|k| k.len() < 350), "{keys:?}");
}
