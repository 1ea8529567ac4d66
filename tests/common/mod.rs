//! Helpers shared by the integration tests that run the binary on generated
//! repositories. Each test binary uses some of them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// The binary, without colour or log settings from the caller's environment.
pub fn cli() -> Command {
    let mut cmd = Command::cargo_bin("kubeless-trigger").expect("binary built");
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

/// Every snapshot repository under `snapshots/`, sorted.
pub fn snapshots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .expect("snapshots/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// A fresh `new nats --defaults` repository.
pub fn repo() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("nats-trigger");
    cli().args(["new", "nats", "--defaults", "-o"]).arg(&dir).assert().success();
    (tmp, dir)
}

/// A file of a repository, as text.
pub fn read(dir: &Path, path: &str) -> String {
    fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub mod openapi;

/// Every example trigger `spec` a rendered repository carries, as (where, value):
/// `examples/trigger.yaml`, the README's example, and `TEST_SPEC_JSON`.
pub fn example_specs(file: impl Fn(&str) -> Option<String>) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    if let Some(text) = file("examples/trigger.yaml") {
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("examples/trigger.yaml is YAML");
        out.push(("examples/trigger.yaml".to_owned(), doc["spec"].clone()));
    }
    if let Some(readme) = file("README.md")
        && let Some(start) = readme.find("```yaml\napiVersion:")
    {
        let block = &readme[start + "```yaml\n".len()..];
        let block = &block[..block.find("```").expect("the README's example block ends")];
        let doc: serde_json::Value = serde_saphyr::from_str(block).expect("the README's example is YAML");
        out.push(("README.md example".to_owned(), doc["spec"].clone()));
    }
    if let Some(text) = file("src/apis/mod.rs") {
        let ast = syn::parse_file(&text).expect("src/apis/mod.rs parses");
        for item in ast.items {
            if let syn::Item::Const(c) = item
                && c.ident == "TEST_SPEC_JSON"
                && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = *c.expr
            {
                let value = serde_json::from_str(&s.value()).expect("TEST_SPEC_JSON is JSON");
                out.push(("TEST_SPEC_JSON".to_owned(), value));
            }
        }
    }
    out
}
