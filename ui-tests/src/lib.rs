//! No library: the compile-time tests of `#[cached]` live in `tests/compile_errors.rs`
//! (bad input, through trybuild) and `pass/` (supported shapes, each a program of its own).
