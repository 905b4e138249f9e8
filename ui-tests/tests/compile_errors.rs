//! Compile-time behaviour of `#[cached]`: every bad input in `ui/*.rs` fails with the message
//! recorded in its `.stderr`. (The supported shapes, `pass/*.rs`, are test programs of this
//! package of their own: `cargo test` builds them without warnings and runs them.)
//!
//! After a deliberate change to a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p ui-tests --test compile_errors` and read the diff.

#[test]
fn bad_inputs_are_compile_errors_with_helpful_messages() {
    trybuild::TestCases::new().compile_fail("ui/*.rs");
}
