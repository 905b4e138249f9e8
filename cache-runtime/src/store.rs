//! The layers values are kept in: [`local`] (L1, in-process) and [`redis`] (L2, shared).

pub(crate) mod local;
pub(crate) mod redis;
