//! Rebuild when a template or source folder file is added, removed or changed: they are
//! embedded with `include_dir!`, whose file list cargo cannot see on its own. Also
//! hashes those inputs once, here, so no run of the tool pays for it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Everything a render reads besides the spec (see `render::templates_hash`).
const RENDER_INPUTS: [&str; 5] = ["templates", "sources", "runtime/src", "runtime/Cargo.toml", "src/schemas"];

fn main() {
    for input in RENDER_INPUTS {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");

    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for input in RENDER_INPUTS {
        walk(&root, &root.join(input), &mut files);
    }
    files.sort();
    let mut sha = Sha256::new();
    for (path, bytes) in &files {
        sha.update(format!("{path}\0{}\0", bytes.len()));
        sha.update(bytes);
        sha.update([0]);
    }
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=KUBELESS_TRIGGER_TEMPLATES_HASH=sha256:{hex}");
}

/// Every file under `path` (or `path` itself), as (path relative to `root`, bytes).
fn walk(root: &Path, path: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    if path.is_dir() {
        let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for entry in entries {
            walk(root, &entry.unwrap_or_else(|e| panic!("{}: {e}", path.display())).path(), out);
        }
    } else {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let relative = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        out.push((relative, bytes));
    }
}
