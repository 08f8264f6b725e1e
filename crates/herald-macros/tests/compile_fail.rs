//! Mistakes `#[receiver]` turns into compile errors, each pinned with the message and the place it
//! points at (`tests/ui/receiver_*.stderr`). Regenerate with
//! `TRYBUILD=overwrite cargo test -p herald-macros --test compile_fail`, then read every changed
//! `.stderr`: the message must say what is wrong and point at the mistake.

#[test]
fn receiver_mistakes_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/receiver_*.rs");
}
