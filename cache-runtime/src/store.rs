//! The layers values are kept in: [`local`] (L1, in-process) and [`redis`] (L2, shared).

pub(crate) mod local;
pub(crate) mod redis;

// Not yet reached from the call path: the store seam wires it in.
#[cfg(feature = "disk")]
#[allow(dead_code)]
pub(crate) mod disk;
