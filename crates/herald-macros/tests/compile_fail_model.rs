//! Mistakes `#[derive(Model)]` turns into compile errors, each pinned with the message and the place
//! it points at (`tests/ui/model_*.stderr`). Regenerate with
//! `TRYBUILD=overwrite cargo test -p herald-macros --test compile_fail_model`, then read every
//! changed `.stderr`: the message must say what is wrong and point at the mistake.

#[test]
fn model_mistakes_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/model_*.rs");
}
