//! No decode allocates more than a small multiple of the bytes it was given, whatever the
//! bytes announce. A counting allocator measures the peak of each decode on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use cache_runtime::codec::{self, DefaultCodec, Header};
use serde::{Deserialize, Serialize};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn sub(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes live at once on this thread while `f` ran, above what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    drop(out);
    PEAK.with(Cell::get) - base
}

#[derive(Serialize, Deserialize, Default)]
struct Tree {
    label: String,
    children: Vec<Tree>,
}

fn header() -> Header {
    Header {
        expires_at_ms: None,
        compute_time: Duration::ZERO,
    }
}

/// A valid envelope for `T` around `payload` (the checksum made to match), as someone able
/// to write to the store could craft.
fn envelope<T: Serialize + Default>(payload: &[u8]) -> Vec<u8> {
    let valid = codec::encode::<T, DefaultCodec>(&T::default(), header()).unwrap();
    let empty_payload = valid.len() - 30;
    let mut bytes = valid[..valid.len() - empty_payload].to_vec();
    bytes.extend_from_slice(payload);
    codec::reseal(&mut bytes);
    bytes
}

/// A varint announcing `n` (bincode's standard format: 253, then 8 bytes).
fn announce(n: u64) -> Vec<u8> {
    let mut bytes = vec![253u8];
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes
}

fn assert_bounded<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) {
    let peak = peak_of(|| codec::decode::<T, DefaultCodec>(bytes));
    let bound = 64 * bytes.len() + 4096;
    assert!(
        peak <= bound,
        "{what}: decoding {} bytes allocated {peak} bytes at peak (bound {bound})",
        bytes.len()
    );
}

#[test]
fn announced_lengths_do_not_reserve_memory() {
    let huge = announce(500_000_000);
    assert_bounded::<String>("String", &envelope::<String>(&huge));
    assert_bounded::<Vec<u8>>("Vec<u8>", &envelope::<Vec<u8>>(&huge));
    assert_bounded::<Vec<u64>>("Vec<u64>", &envelope::<Vec<u64>>(&huge));
    assert_bounded::<Vec<String>>("Vec<String>", &envelope::<Vec<String>>(&huge));
    assert_bounded::<HashMap<u64, String>>("HashMap", &envelope::<HashMap<u64, String>>(&huge));
}

#[test]
fn nested_announcements_do_not_add_up() {
    // Each level: an empty label, then a child list announcing a huge length.
    let mut payload = Vec::new();
    for _ in 0..60 {
        payload.push(0);
        payload.extend_from_slice(&announce(1 << 40));
    }
    let bytes = envelope::<Vec<Tree>>(&[announce(1 << 40), payload].concat());
    assert_bounded::<Vec<Tree>>("nested trees", &bytes);
}

#[test]
fn legitimate_values_still_decode_within_the_bound() {
    let value: Vec<u64> = (0..10_000).collect();
    let bytes = codec::encode::<_, DefaultCodec>(&value, header()).unwrap();
    assert_bounded::<Vec<u64>>("a real Vec<u64>", &bytes);
    let (back, _) = codec::decode::<Vec<u64>, DefaultCodec>(&bytes).unwrap();
    assert_eq!(back, value);
}
