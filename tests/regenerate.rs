//! `generate`, `check` and `update` on fresh generated repositories, as CI and
//! people use them. (scripts/test-all also builds a repository after a field
//! was added, with `cargo test`.)

use std::fs;
use std::path::Path;

use kubeless_trigger::lock::{LOCK_FILE, Lock};
use predicates::prelude::*;
use predicates::str::contains;
use tempfile::TempDir;

mod common;
use common::{cli, read, repo};

fn append(dir: &Path, path: &str, text: &str) {
    let old = read(dir, path);
    fs::write(dir.join(path), old + text).unwrap();
}

fn check(dir: &Path) -> assert_cmd::assert::Assert {
    cli().arg("check").arg(dir).assert()
}

const NEW_FIELD: &str = "- name: maxInFlight\n  type: integer\n  default: 10\n  minimum: 1\n  description: Deliveries in flight at once.\n";

#[test]
fn a_fresh_repository_checks_clean() {
    let (_tmp, dir) = repo();
    check(&dir).success().stdout(contains("ok:"));
    cli()
        .args(["check", "--format", "json"])
        .arg(&dir)
        .assert()
        .success()
        .stdout(contains("\"clean\": true"));
}

#[test]
fn a_hand_edit_to_a_generated_file_fails_check_and_generate_restores_it() {
    let (_tmp, dir) = repo();
    let original = read(&dir, "src/controller.rs");
    append(&dir, "src/controller.rs", "// hand edit\n");
    check(&dir)
        .code(1)
        .stdout(contains("changed:    src/controller.rs"))
        .stdout(contains("-// hand edit"))
        .stderr(contains("drifted"));
    let out =
        cli().args(["check", "--format", "json"]).arg(&dir).assert().code(1).get_output().stdout.clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["changed"][0]["path"], "src/controller.rs");

    cli().args(["generate", "--dry-run"]).arg(&dir).assert().success().stdout(contains("updated"));
    assert!(read(&dir, "src/controller.rs").ends_with("// hand edit\n"), "dry run wrote nothing");
    cli().arg("generate").arg(&dir).assert().success().stdout(contains("1 updated"));
    assert_eq!(read(&dir, "src/controller.rs"), original);
    check(&dir).success();
}

#[test]
fn a_hand_edit_to_a_user_file_is_ignored_by_check_and_kept_by_generate() {
    let (_tmp, dir) = repo();
    append(&dir, "src/event_source.rs", "// my consumer\n");
    append(&dir, "README.md", "my notes\n");
    check(&dir).success();
    cli().arg("generate").arg(&dir).assert().success();
    assert!(read(&dir, "src/event_source.rs").ends_with("// my consumer\n"));
    assert!(read(&dir, "README.md").ends_with("my notes\n"));
}

#[test]
fn a_missing_generated_file_is_drift_and_generate_creates_it() {
    let (_tmp, dir) = repo();
    fs::remove_file(dir.join("Makefile")).unwrap();
    check(&dir).code(1).stdout(contains("missing:    Makefile"));
    cli().arg("generate").arg(&dir).assert().success().stdout(contains("created"));
    check(&dir).success();
}

#[test]
fn adding_a_field_fails_check_until_generate_puts_it_everywhere() {
    let (_tmp, dir) = repo();
    append(&dir, "trigger.yaml", NEW_FIELD);
    check(&dir)
        .code(1)
        .stdout(contains("src/apis/kubeless/v1beta1/nats_trigger.rs"))
        .stdout(contains("nats-trigger-crd.yaml"))
        .stdout(contains("trigger.yaml changed since the last render"));
    cli().arg("generate").arg(&dir).assert().success();
    check(&dir).success();
    assert!(read(&dir, "src/apis/kubeless/v1beta1/nats_trigger.rs").contains("pub max_in_flight: i64"));
    assert!(read(&dir, "nats-trigger-crd.yaml").contains("maxInFlight:"));
    assert!(read(&dir, "src/apis/mod.rs").contains("\"topic\""), "tests still build the spec");
}

#[test]
fn removing_a_field_removes_it_everywhere() {
    let (_tmp, dir) = repo();
    append(&dir, "trigger.yaml", NEW_FIELD);
    cli().arg("generate").arg(&dir).assert().success();
    let spec = read(&dir, "trigger.yaml").replace(NEW_FIELD, "");
    fs::write(dir.join("trigger.yaml"), spec).unwrap();
    cli().arg("generate").arg(&dir).assert().success();
    check(&dir).success();
    for path in ["src/apis/kubeless/v1beta1/nats_trigger.rs", "nats-trigger-crd.yaml"] {
        let text = read(&dir, path);
        assert!(!text.contains("maxInFlight") && !text.contains("max_in_flight"), "{path}");
    }
}

#[test]
fn files_the_spec_no_longer_produces_are_removed_unless_edited() {
    let (_tmp, dir) = repo();
    // A new API version moves the types; the old generated files go away.
    let spec =
        read(&dir, "trigger.yaml").replace("association: selector", "version: v1\nassociation: selector");
    fs::write(dir.join("trigger.yaml"), spec).unwrap();
    append(&dir, "src/apis/kubeless/v1beta1/function.rs", "// edited\n");
    cli()
        .arg("generate")
        .arg(&dir)
        .assert()
        .success()
        .stdout(contains("removed").and(contains("kept (edited)")));
    assert!(!dir.join("src/apis/kubeless/v1beta1/nats_trigger.rs").exists());
    assert!(dir.join("src/apis/kubeless/v1beta1/function.rs").exists(), "edited file kept");
    assert!(dir.join("src/apis/kubeless/v1/nats_trigger.rs").exists());
    check(&dir).code(1).stdout(contains("unexpected: src/apis/kubeless/v1beta1/function.rs"));
}

#[test]
fn check_reports_a_missing_or_hand_edited_lock() {
    let (_tmp, dir) = repo();
    let lock = read(&dir, LOCK_FILE);
    fs::write(dir.join(LOCK_FILE), lock.replace("toolVersion", "toolVersoin")).unwrap();
    check(&dir).code(1).stdout(contains("hand-edited or corrupt"));
    fs::remove_file(dir.join(LOCK_FILE)).unwrap();
    check(&dir).code(1).stdout(contains(".kubeless-trigger.lock is missing"));
    cli().arg("generate").arg(&dir).assert().success();
    check(&dir).success();
}

#[test]
fn check_outside_a_repository_is_a_usage_error() {
    let tmp = TempDir::new().unwrap();
    check(tmp.path()).code(2).stderr(contains("not a kubeless-trigger repository"));
    fs::write(tmp.path().join("trigger.yaml"), "source: [").unwrap();
    check(tmp.path()).code(2).stderr(contains("trigger.yaml"));
}

/// Pretend the last render of `path` (by an older tool) was `old_render`:
/// the lock's merge base and hash say so.
fn pretend_last_render(dir: &Path, path: &str, old_render: &str) {
    let mut lock = Lock::parse(&read(dir, LOCK_FILE)).unwrap();
    let entry = lock.files.iter_mut().find(|f| f.path == path).unwrap();
    entry.base = Some(old_render.to_owned());
    entry.hash = kubeless_trigger::lock::hash(old_render);
    lock.tool_version = "0.0.1".into();
    fs::write(dir.join(LOCK_FILE), lock.to_text()).unwrap();
}

#[test]
fn update_replaces_an_untouched_user_file_with_the_new_render() {
    let (_tmp, dir) = repo();
    let current = read(&dir, "README.md");
    let old = current.replace("## Use it", "## Usage");
    fs::write(dir.join("README.md"), &old).unwrap();
    pretend_last_render(&dir, "README.md", &old);
    check(&dir).code(1).stdout(contains("was written by kubeless-trigger 0.0.1"));
    cli().args(["update", "--dry-run"]).arg(&dir).assert().success().stdout(contains("updated"));
    assert_eq!(read(&dir, "README.md"), old, "dry run wrote nothing");
    cli().arg("update").arg(&dir).assert().success();
    assert_eq!(read(&dir, "README.md"), current);
    check(&dir).success();
}

#[test]
fn update_merges_when_user_and_template_changed_different_parts() {
    let (_tmp, dir) = repo();
    let current = read(&dir, "README.md");
    let old = current.replace("## Use it", "## Usage");
    pretend_last_render(&dir, "README.md", &old);
    let mine =
        old.replace("## Configuration", "## Configuration\n\nOur cluster sets FUNCTIONS_NAMESPACE=team-a.");
    fs::write(dir.join("README.md"), &mine).unwrap();
    cli().arg("update").arg(&dir).assert().success().stdout(contains("merged"));
    let merged = read(&dir, "README.md");
    assert!(merged.contains("## Use it"), "the template's change arrived");
    assert!(merged.contains("Our cluster sets FUNCTIONS_NAMESPACE=team-a."), "the user's change stayed");
    assert!(!merged.contains("<<<<<<<"));
}

#[test]
fn update_reports_a_conflict_when_both_changed_the_same_lines() {
    let (_tmp, dir) = repo();
    let current = read(&dir, "README.md");
    let old = current.replace("## Use it", "## Usage");
    pretend_last_render(&dir, "README.md", &old);
    fs::write(dir.join("README.md"), old.replace("## Usage", "## How we use it")).unwrap();
    cli()
        .arg("update")
        .arg(&dir)
        .assert()
        .code(1)
        .stdout(contains("CONFLICT").and(contains("README.md")))
        .stderr(contains("conflicts").and(contains("README.md")));
    let text = read(&dir, "README.md");
    assert!(text.contains("<<<<<<<") && text.contains("## How we use it") && text.contains("## Use it"));
}

#[test]
fn a_lock_from_another_build_is_not_trusted() {
    let (_tmp, dir) = repo();
    let mut lock = Lock::parse(&read(&dir, LOCK_FILE)).unwrap();
    lock.templates_hash = kubeless_trigger::lock::hash("other templates");
    fs::write(dir.join(LOCK_FILE), lock.to_text()).unwrap();
    check(&dir).code(1).stdout(contains("another build"));
    cli().args(["check", "--full"]).arg(&dir).assert().code(1);
    cli().arg("update").arg(&dir).assert().success();
    check(&dir).success();
    cli().args(["check", "--full"]).arg(&dir).assert().success();
}

/// Switching a built-in source off (or on) changes what `src/event_source.rs`
/// was scaffolded from: `generate` keeps the user's file and says so, and
/// `update` brings the new scaffold in.
#[test]
fn a_changed_scaffold_is_flagged_by_generate_and_merged_by_update() {
    let (_tmp, dir) = repo();
    append(&dir, "trigger.yaml", "builtIn: false\n");
    cli()
        .arg("generate")
        .arg(&dir)
        .assert()
        .success()
        .stdout(contains("kept (run update)").and(contains("src/event_source.rs")))
        .stdout(contains("`kubeless-trigger update` merges"));
    assert!(read(&dir, "src/event_source.rs").contains("async_nats"), "generate keeps the user's file");
    cli().arg("update").arg(&dir).assert().success();
    assert!(read(&dir, "src/event_source.rs").contains("event source is a skeleton"));
    cli().arg("generate").arg(&dir).assert().success().stdout(contains("kept (run update)").not());
}
