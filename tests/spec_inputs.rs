//! Inputs the tool used to accept silently or report falsely (the safety
//! issue, items 5-9): each is refused with its spec key and what would be
//! valid, and exit status 2, or accepted and then really works.

use predicates::prelude::*;
use predicates::str::contains;

mod common;
use common::cli;

// 7. `association` is required: never defaulted behind the user's back.

#[test]
fn association_is_missing_without_a_terminal_unless_defaults_or_a_preset_give_it() {
    let missing = contains("association: missing (--association selector|function)");
    cli().args(["new", "widget", "--no-input", "--dry-run"]).assert().code(2).stderr(missing.clone());
    // No terminal: stdin is not one here.
    cli().args(["new", "widget", "--dry-run"]).write_stdin("").assert().code(2).stderr(missing);
    cli().args(["new", "widget", "--defaults", "--dry-run"]).assert().success();
    cli().args(["new", "widget", "--no-input", "--association", "function", "--dry-run"]).assert().success();
    cli().args(["new", "nats", "--no-input", "--dry-run"]).assert().success();
    // Listed together with the other problems.
    cli()
        .args(["new", "widget", "--no-input", "--group", "nodot", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("2 problems").and(contains("association: missing")).and(contains("--group")));
}

// 5. Accepted specs compile: reserved kinds and crate names are refused.

#[test]
fn kinds_the_generated_code_already_uses_are_refused() {
    for kind in ["Self", "CustomResourceExt", "CustomResourceDefinition", "Context", "Config", "Trigger"] {
        cli()
            .args(["new", "widget", "--defaults", "--dry-run", "--kind", kind])
            .assert()
            .code(2)
            .stderr(contains("kind").and(contains(kind)).and(contains("--kind")));
    }
}

#[test]
fn crate_names_rust_reserves_are_refused() {
    for name in ["test", "std", "core", "alloc", "proc-macro", "proc_macro", "hyper", "kube-runtime"] {
        cli()
            .args(["new", "widget", "--defaults", "--dry-run", "--crate", name])
            .assert()
            .code(2)
            .stderr(contains("crate").and(contains(name)));
    }
}
