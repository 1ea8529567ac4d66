//! Rebuild when a render input is added, removed or changed: they are embedded
//! with `include_dir!`, whose file list cargo cannot see on its own. Also hashes
//! those inputs once, here, so no run of the tool pays for it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[path = "src/render_inputs.rs"]
#[allow(dead_code)]
mod render_inputs;

fn main() {
    for root in render_inputs::ROOTS {
        println!("cargo:rerun-if-changed={root}");
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");

    let crate_root =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for root in render_inputs::ROOTS {
        walk(&crate_root, root, &mut files);
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

/// Every render input at or under `relative`, as (path, bytes). Symbolic
/// links are not followed.
fn walk(crate_root: &Path, relative: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let path = crate_root.join(relative);
    let Ok(meta) = std::fs::symlink_metadata(&path) else { return };
    if meta.is_dir() {
        let entries = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            walk(crate_root, &format!("{relative}/{name}"), out);
        }
    } else if meta.is_file() && render_inputs::is_render_input(relative) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((relative.to_owned(), bytes));
    }
}
