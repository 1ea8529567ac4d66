//! The body of the `spec` fuzz target, shared with `tests/fuzz_corpus.rs`
//! so the corpus also runs under a plain `cargo test`: any text must be
//! either refused with problems (each printable) or accepted, rendered,
//! and recorded so that it reads back as the same spec. A panic anywhere
//! (parse, shape, validation, names, model, templates, CRD) is a bug.

use kubeless_trigger::{render, spec};

/// Inputs beyond this are cut: the spec cap is 1 MiB, but a fuzzer's time
/// is better spent on many small documents than a few large ones.
pub const MAX_INPUT: usize = 64 * 1024;

pub fn run(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let Ok(text) = std::str::from_utf8(data) else { return };
    match spec::from_text(text, "fuzz.yaml") {
        Err(e) => {
            assert!(!e.problems.is_empty(), "a refusal names at least one problem");
            let _ = e.to_string();
        }
        Ok(accepted) => {
            let plan = render::repository(&accepted)
                .unwrap_or_else(|e| panic!("an accepted spec failed to render: {e}\n{text}"));
            let recorded = plan.get(render::SPEC_FILE).expect("the spec is recorded");
            let again = spec::from_text(&recorded.content, render::SPEC_FILE).unwrap_or_else(|e| {
                panic!("the recorded spec does not read back: {e}\n{}", recorded.content)
            });
            assert_eq!(again, accepted, "the recorded spec reads back as a different spec");
        }
    }
}
