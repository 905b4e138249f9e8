//! Compile-time behaviour of `#[cached]`: every bad input in `tests/ui/*.rs` fails with the
//! message recorded in its `.stderr`, and every shape in `tests/ui/pass/` compiles without a
//! warning (each pass file denies warnings) and runs.
//!
//! After a deliberate change to a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p integration-tests --test ui` and read the diff.

#[test]
fn bad_inputs_are_compile_errors_with_helpful_messages() {
    trybuild::TestCases::new().compile_fail("ui/*.rs");
}

#[test]
fn supported_shapes_compile_cleanly_and_run() {
    trybuild::TestCases::new().pass("ui/pass/*.rs");
}
