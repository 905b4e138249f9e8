//! Runnable examples: `cargo run -p examples --example NAME`. The note site's code lives here
//! so that its HTTP test can serve it too.

pub mod notes;
pub mod titles;
