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
