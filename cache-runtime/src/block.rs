//! Fragment blocks: the caches of `cached_block!` invocations, known by their names.
//!
//! A block's cache is a `static` inside the expansion, created the first time the block runs,
//! but a preload scope may name its keys before that: [`block_key`] returns a [`Key`] owned by
//! the name's [`BlockOwner`], which answers for the block's cache once it exists (and as a
//! remote, version-0 cache before). The block's cache is known to preload scopes by the
//! owner's identity, so a scope filled under either finds its values.

use std::sync::{Mutex, OnceLock};

use crate::key::{CallProbe, Held, Key, KeyBuf, KeyOwner, KeyPart, Marks};
use crate::layered::{CachedFn, Layers};
use crate::sync::lock;

/// What the keys of one block name point to.
struct BlockOwner {
    name: String,
    /// The block's cache, once it ran.
    target: OnceLock<&'static dyn BlockCache>,
}

/// What a block's name reaches of its cache, whatever its value type.
trait BlockCache: KeyOwner {
    fn clear_local(&self);
    fn invalidate(&self, args: KeyBuf);
}

impl BlockCache for Layers {
    fn clear_local(&self) {
        Layers::clear_local(self);
    }

    fn invalidate(&self, args: KeyBuf) {
        Layers::invalidate(self, args);
    }
}

/// Every block name seen, interned (a program has few).
static OWNERS: Mutex<Vec<&'static BlockOwner>> = Mutex::new(Vec::new());

fn owner(name: &str) -> &'static BlockOwner {
    let mut owners = lock(&OWNERS);
    if let Some(owner) = owners.iter().find(|owner| owner.name == name) {
        return owner;
    }
    let owner: &'static BlockOwner = Box::leak(Box::new(BlockOwner {
        name: name.to_owned(),
        target: OnceLock::new(),
    }));
    owners.push(owner);
    owner
}

impl KeyOwner for BlockOwner {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        0
    }

    fn is_local(&self) -> bool {
        self.target.get().is_some_and(|t| t.is_local())
    }

    fn store_name(&self) -> Option<&'static str> {
        self.target.get().and_then(|t| t.store_name())
    }

    fn held(&self, args: &str, read: bool) -> Option<Held> {
        self.target.get().and_then(|t| t.held(args, read))
    }

    fn fresh_in_front(&self, probe: CallProbe, args: &KeyBuf) -> bool {
        self.target
            .get()
            .is_some_and(|t| t.fresh_in_front(probe, args))
    }

    fn front_value(&self, probe: CallProbe, args: &KeyBuf) -> Option<Held> {
        self.target.get().and_then(|t| t.front_value(probe, args))
    }

    fn marks(&self, probe: CallProbe, args: &KeyBuf) -> Option<Marks> {
        self.target.get().and_then(|t| t.marks(probe, args))
    }

    fn count_l2_error(&self) {
        if let Some(target) = self.target.get() {
            target.count_l2_error();
        }
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn epoch(&self) -> u64 {
        self.target.get().map_or(0, |t| t.epoch())
    }
}

/// The key of the entry `cached_block!(name = name, key = key, ..)` reads and writes: name it
/// in a [`preload`](fn@crate::preload) scope to fetch the block's value with the scope's MGET.
///
/// `key` is encoded as a `#[cached]` function's single argument would be, so
/// `block_key("note_comments", &note.id)` matches `key = note.id`. A block without `key` is
/// `block_key(name, &())`.
///
/// ```
/// use cache_runtime::{block_key, cached_block, preload};
///
/// let note_id = 7_u64;
/// let html = preload([block_key("docs::comments", &note_id)], || {
///     cached_block!(name = "docs::comments", ttl = 60, key = note_id, value = String, {
///         format!("<ul><li>comment on {note_id}</li></ul>")
///     })
/// });
/// assert!(html.contains("comment on 7"));
/// assert_eq!(block_key("docs::comments", &7_u64).to_string(), "docs::comments:v0:7");
/// ```
pub fn block_key<K: KeyPart + ?Sized>(name: &str, key: &K) -> Key {
    // A block's call probes its front table with its encoded key.
    Key::probed(
        owner(name),
        crate::__private::element_args(key),
        CallProbe::Encoded,
    )
}

/// Removes the entry of `cached_block!(name = name, key = key, ..)` from L1 and the shared
/// store (nothing when the block has not run in this process: then L1 holds nothing, and
/// the shared store's entry is left to its `ttl`).
pub fn block_invalidate<K: KeyPart + ?Sized>(name: &str, key: &K) {
    if let Some(target) = owner(name).target.get() {
        target.invalidate(crate::__private::element_args(key));
    }
}

/// Empties the in-process layer of the block named `name` (the shared store keeps its
/// entries): its next runs read from the shared store, as a freshly started process would.
pub fn block_clear_local(name: &str) {
    if let Some(target) = owner(name).target.get() {
        target.clear_local();
    }
}

/// Registers a block's cache under its name (the first one to run with a name wins the
/// owner; a second block with the same name shares its entries, and is warned about).
pub(crate) fn register<V: Clone + Send + Sync + 'static>(
    cache: CachedFn<V>,
) -> &'static CachedFn<V> {
    let cache: &'static CachedFn<V> = Box::leak(Box::new(cache));
    let layers: &'static Layers = cache;
    let owner = owner(KeyOwner::name(layers));
    cache.set_alias(owner.id());
    if owner.target.set(layers).is_err() {
        tracing::warn!(
            name = %owner.name,
            "two `cached_block!`s have this name: they share entries; give each its own name"
        );
    }
    cache
}
