//! The fuzz target's body under a plain `cargo test`, on stable: every file
//! of the fuzz corpus (`fuzz/corpus/spec/`, plus any crash artifacts saved
//! in `fuzz/artifacts/spec/`), then a fixed budget of byte-level mutations
//! of them from a fixed seed, so a regression found once by `scripts/fuzz`
//! stays found, and a machine without nightly still exercises the target.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../fuzz/spec_body.rs"]
mod spec_body;

/// Corpus inputs, sorted by name so every run is the same.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus/spec", "artifacts/spec"] {
        for entry in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            if entry.path().is_file() {
                out.push((
                    format!("{dir}/{}", entry.file_name().to_string_lossy()),
                    fs::read(entry.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_corpus_input_passes_the_fuzz_target() {
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the corpus is in the repository: {} files", corpus.len());
    for (name, data) in &corpus {
        let started = Instant::now();
        spec_body::run(data);
        assert!(started.elapsed() < Duration::from_secs(10), "{name} took {:?}", started.elapsed());
    }
}

/// xorshift64*: a fixed sequence of mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to YAML and to the spec's checks.
const INTERESTING: &[&[u8]] = &[
    b": ",
    b"\n",
    b"  ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"#",
    b"&a ",
    b"*a",
    b".nan",
    b"-.inf",
    b"9223372036854775808",
    b"-1",
    b"0",
    b"\r",
    b"\xe2\x80\xae",
    b"|",
    b"\\",
    b"\"#",
    b"true",
    b"null",
    b"required: true\n",
    b"type: integer\n",
    b"pattern: ",
    b"example: ",
    b"default: ",
    b"name: ",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(4) {
            0 if !data.is_empty() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            2 if at < data.len() => data[at] ^= 1 << rng.below(8),
            _ => {
                let piece: Vec<u8> = data[at.min(data.len())..].iter().take(rng.below(32)).copied().collect();
                data.splice(at..at, piece);
            }
        }
    }
}

#[test]
fn mutations_of_the_corpus_pass_the_fuzz_target() {
    let corpus = corpus();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..600 {
        let (name, data) = &corpus[rng.below(corpus.len())];
        let mut data = data.clone();
        mutate(&mut rng, &mut data);
        let outcome = std::panic::catch_unwind(|| spec_body::run(&data));
        assert!(outcome.is_ok(), "round {round}, from {name}: input\n{}", String::from_utf8_lossy(&data));
    }
}
