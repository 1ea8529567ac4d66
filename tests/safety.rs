//! What a hostile or damaged repository, lock, spec, signal or output stream
//! can make the binary do: `check` cannot be talked out of a render, the lock
//! cannot aim `generate` at files it does not own, writes are all-or-nothing,
//! concurrent runs do not corrupt a repository, and output errors never panic.

use std::fs;
use std::path::Path;
use std::time::Duration;

use kubeless_trigger::lock::{LOCK_FILE, Lock, hash};
use predicates::prelude::*;
use predicates::str::{contains, is_match};
use tempfile::TempDir;

mod common;
use common::{cli, read, repo};

fn lock_of(dir: &Path) -> Lock {
    Lock::parse(&read(dir, LOCK_FILE)).unwrap()
}

fn write_lock(dir: &Path, lock: &Lock) {
    fs::write(dir.join(LOCK_FILE), lock.to_text()).unwrap();
}

fn check(dir: &Path) -> assert_cmd::assert::Assert {
    cli().arg("check").arg(dir).assert()
}

// 1. `check` always renders: the lock cannot vouch for a file.

#[test]
fn check_is_not_fooled_by_a_lock_that_records_a_hand_edit() {
    let (_tmp, dir) = repo();
    let edited = read(&dir, "src/controller.rs") + "// hand edit\n";
    fs::write(dir.join("src/controller.rs"), &edited).unwrap();
    let mut lock = lock_of(&dir);
    lock.files.iter_mut().find(|f| f.path == "src/controller.rs").unwrap().hash = hash(&edited);
    write_lock(&dir, &lock);
    check(&dir).code(1).stdout(contains("changed:    src/controller.rs"));
}

#[test]
fn check_is_not_fooled_by_a_file_deleted_with_its_lock_entry() {
    let (_tmp, dir) = repo();
    fs::remove_file(dir.join("src/controller.rs")).unwrap();
    let mut lock = lock_of(&dir);
    lock.files.retain(|f| f.path != "src/controller.rs");
    write_lock(&dir, &lock);
    check(&dir).code(1).stdout(contains("missing:    src/controller.rs"));
}

#[test]
fn check_is_not_fooled_by_a_truncated_lock() {
    let (_tmp, dir) = repo();
    let mut lock = lock_of(&dir);
    lock.files.clear();
    write_lock(&dir, &lock);
    check(&dir).code(1).stdout(contains("does not list src/controller.rs"));
}

#[test]
fn check_full_is_still_accepted() {
    let (_tmp, dir) = repo();
    cli().args(["check", "--full"]).arg(&dir).assert().success();
}

// 2 and 9. Every read is of a regular file and capped.

#[test]
fn a_huge_spec_file_is_refused_naming_it() {
    let tmp = TempDir::new().unwrap();
    let spec = tmp.path().join("big.yaml");
    let padding = "#".repeat(2 << 20);
    fs::write(&spec, format!("formatVersion: 1\nsource: nats\nassociation: selector\n{padding}\n")).unwrap();
    cli()
        .args(["new", "--dry-run", "--spec"])
        .arg(&spec)
        .assert()
        .code(2)
        .stderr(contains("big.yaml").and(contains("larger than 1 MiB")));
}

#[cfg(unix)]
#[test]
fn an_endless_spec_is_refused_fast() {
    cli()
        .args(["new", "--dry-run", "--spec", "/dev/zero"])
        .timeout(Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(contains("/dev/zero").and(contains("larger than 1 MiB")));
}

#[cfg(unix)]
#[test]
fn a_fifo_where_a_generated_file_belongs_is_refused_not_read() {
    let (_tmp, dir) = repo();
    let path = dir.join("src/controller.rs");
    fs::remove_file(&path).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
    for command in ["check", "generate"] {
        cli()
            .arg(command)
            .arg(&dir)
            .timeout(Duration::from_secs(20))
            .assert()
            .code(2)
            .stderr(contains("src/controller.rs").and(contains("not a regular file")));
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_generated_file_is_refused_even_with_the_right_content() {
    let (tmp, dir) = repo();
    let outside = tmp.path().join("controller.rs");
    fs::rename(dir.join("src/controller.rs"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("src/controller.rs")).unwrap();
    check(&dir).code(2).stderr(contains("src/controller.rs").and(contains("a symlink")));
}

#[test]
fn a_huge_generated_file_is_refused_naming_it() {
    let (_tmp, dir) = repo();
    let big = read(&dir, "src/controller.rs") + &"//\n".repeat(3 << 20);
    fs::write(dir.join("src/controller.rs"), big).unwrap();
    check(&dir).code(2).stderr(contains("src/controller.rs").and(contains("larger than 8 MiB")));
}

// 2. The lock cannot aim `generate` at files the tool does not own.

/// Claim in the lock that `path` (as it is on disk now) is a generated file
/// of the last render.
fn claim_generated(dir: &Path, path: &str) {
    let mut lock = lock_of(dir);
    let entry = kubeless_trigger::lock::LockedFile {
        path: path.to_owned(),
        owner: kubeless_trigger::plan::Owner::Generated,
        // Only regular files are read: some claims name devices.
        hash: match dir.join(path) {
            p if p.is_file() => hash(&fs::read_to_string(p).unwrap()),
            _ => hash(""),
        },
        base: None,
    };
    lock.files.push(entry);
    write_lock(dir, &lock);
}

#[test]
fn a_lock_entry_under_git_is_refused_and_nothing_is_deleted() {
    let (_tmp, dir) = repo();
    fs::create_dir(dir.join(".git")).unwrap();
    fs::write(dir.join(".git/config"), "[core]\n").unwrap();
    claim_generated(&dir, ".git/config");
    for command in ["generate", "check", "update"] {
        cli()
            .arg(command)
            .arg(&dir)
            .assert()
            .code(2)
            .stderr(contains(LOCK_FILE).and(contains(".git/config")));
    }
    assert_eq!(read(&dir, ".git/config"), "[core]\n");
}

#[test]
fn lock_entries_outside_the_repository_are_refused_without_reading_them() {
    for bad in ["/dev/zero", "../outside", "src/../Makefile", "./Makefile", "src//x", LOCK_FILE] {
        let (_tmp, dir) = repo();
        claim_generated(&dir, bad);
        for command in ["check", "generate"] {
            cli()
                .arg(command)
                .arg(&dir)
                .timeout(Duration::from_secs(20))
                .assert()
                .code(2)
                .stderr(contains(LOCK_FILE).and(contains(format!("{bad:?}"))));
        }
    }
}

#[test]
fn a_user_file_claimed_by_the_lock_is_never_removed() {
    let (_tmp, dir) = repo();
    // Even with our header: no template produces MYNOTES.md.
    let notes = "# Code generated by kubeless-trigger. DO NOT EDIT.\nmy notes\n";
    fs::write(dir.join("MYNOTES.md"), notes).unwrap();
    claim_generated(&dir, "MYNOTES.md");
    // A path a template could produce, but without our header.
    fs::create_dir_all(dir.join("src/apis/kubeless/v2")).unwrap();
    fs::write(dir.join("src/apis/kubeless/v2/nats_trigger.rs"), "// mine\n").unwrap();
    claim_generated(&dir, "src/apis/kubeless/v2/nats_trigger.rs");
    cli().arg("generate").arg(&dir).assert().success().stdout(is_match("(?m)^removed").unwrap().not());
    assert_eq!(read(&dir, "MYNOTES.md"), notes);
    assert_eq!(read(&dir, "src/apis/kubeless/v2/nats_trigger.rs"), "// mine\n");
    // The lock no longer claims them, so check is clean and a rerun keeps them too.
    check(&dir).success();
    cli().arg("generate").arg(&dir).assert().success();
    assert!(dir.join("MYNOTES.md").is_file());
}

// 3. Writes are all or nothing.

const NEW_FIELD: &str = "- name: maxInFlight\n  type: integer\n  default: 10\n  minimum: 1\n";

/// Every file, directory and symlink under `dir`, relative, with its bytes
/// (and mode), so a restored tree compares equal only when it is identical.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).expect("readable dir").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                walk(root, &path, out);
            } else {
                #[cfg(unix)]
                let rel = format!("{rel} {:o}", std::os::unix::fs::PermissionsExt::mode(&meta.permissions()));
                out.push((rel, fs::read(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn staging_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kubeless-trigger-staging"))
        .collect()
}

#[test]
fn a_file_where_a_directory_must_go_is_refused_before_anything_is_written() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("pf");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("src"), "x").unwrap();
    let before = tree(&out);
    cli()
        .args(["new", "nats", "--defaults", "--force", "-o"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(contains("src is a file where a directory must go"));
    assert_eq!(tree(&out), before);
}

#[cfg(unix)]
#[test]
fn a_symlink_in_the_way_of_new_is_a_refusal_of_the_output_not_a_failure() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("pf");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(tmp.path(), out.join("src")).unwrap();
    let before = tree(&out);
    cli()
        .args(["new", "nats", "--defaults", "--force", "-o"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(contains("src").and(contains("a symlink is in the way")));
    assert_eq!(tree(&out), before);
}

#[test]
fn a_directory_where_a_file_must_go_is_refused_before_anything_is_written() {
    let (_tmp, dir) = repo();
    fs::write(dir.join("trigger.yaml"), read(&dir, "trigger.yaml") + NEW_FIELD).unwrap();
    fs::remove_file(dir.join("src/controller.rs")).unwrap();
    fs::create_dir(dir.join("src/controller.rs")).unwrap();
    let before = tree(&dir);
    cli()
        .arg("generate")
        .arg(&dir)
        .assert()
        .code(2)
        .stderr(contains("src/controller.rs").and(contains("directory")));
    cli()
        .args(["new", "nats", "--defaults", "--force", "-o"])
        .arg(&dir)
        .assert()
        .code(2)
        .stderr(contains("src/controller.rs is a directory where a file must go"));
    assert_eq!(tree(&dir), before);
}

/// Fail `generate` at every step, from staging to the lock: each time the
/// repository is exactly as before, and no table claims otherwise.
#[test]
fn a_generate_that_fails_at_any_step_changes_nothing() {
    let (_tmp, dir) = repo();
    fs::write(dir.join("trigger.yaml"), read(&dir, "trigger.yaml") + NEW_FIELD).unwrap();
    let plan = cli().args(["generate", "--dry-run"]).arg(&dir).assert().success().get_output().stdout.clone();
    let changes = String::from_utf8(plan)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("updated") || l.starts_with("created") || l.starts_with("removed"))
        .count();
    assert!(changes >= 2, "a field touches several files");
    let before = tree(&dir);
    // Steps: 0 after staging, one per file moved into place, the last the lock.
    for step in 0..=changes + 1 {
        cli()
            .arg("generate")
            .arg(&dir)
            .env("KUBELESS_TRIGGER_TEST_FAIL_AT", step.to_string())
            .assert()
            .code(1)
            .stderr(contains("injected failure").and(contains("nothing was changed")))
            .stdout(contains("ACTION").not());
        assert_eq!(tree(&dir), before, "failure at step {step} left changes");
    }
    cli().arg("generate").arg(&dir).assert().success().stdout(contains("updated"));
    check(&dir).success();
}

#[test]
fn a_new_over_existing_files_that_fails_restores_them() {
    let (_tmp, dir) = repo();
    fs::write(dir.join("README.md"), "my notes\n").unwrap();
    fs::write(dir.join("Makefile"), "# mine\n").unwrap();
    let before = tree(&dir);
    cli()
        .args(["new", "nats", "--defaults", "--force", "-o"])
        .arg(&dir)
        .env("KUBELESS_TRIGGER_TEST_FAIL_AT", "20")
        .assert()
        .code(1);
    assert_eq!(tree(&dir), before);
}

#[test]
fn leftovers_of_a_dead_run_never_block_a_rerun() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    // The fixed name older versions used, and one of a killed run.
    for leftover in [".kubeless-trigger-staging/src", ".kubeless-trigger-staging-4194305-00ff/new/src"] {
        fs::create_dir_all(out.join(leftover)).unwrap();
        fs::write(out.join(leftover).join("main.rs"), "// half\n").unwrap();
    }
    cli().args(["new", "nats", "--defaults", "-o"]).arg(&out).assert().success();
    assert_eq!(staging_leftovers(&out), Vec::<String>::new());
    check(&out).success();
}

#[cfg(unix)]
mod signals {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    /// Run the binary paused at `step`, send `signal` once it says so, and
    /// return its exit code.
    fn interrupt(args: &[&str], dir: &Path, step: usize, signal: &str) -> Option<i32> {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubeless-trigger"))
            .args(args)
            .arg(dir)
            .env("KUBELESS_TRIGGER_TEST_PAUSE_AT", step.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let paused = stderr.by_ref().any(|line| line.unwrap().contains("test hook: paused"));
        assert!(paused, "the run never reached step {step}");
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let rest: Vec<String> = stderr.map(Result::unwrap).collect();
        assert!(rest.iter().any(|l| l.contains("interrupted by SIG")), "{rest:?}");
        child.wait().unwrap().code()
    }

    #[test]
    fn sigterm_during_new_leaves_nothing_behind_and_a_rerun_works() {
        let tmp = TempDir::new().unwrap();
        let out = tmp.path().join("out");
        assert_eq!(interrupt(&["new", "nats", "--defaults", "-o"], &out, 3, "TERM"), Some(143));
        assert!(!out.exists(), "the directory this run created is gone");
        cli().args(["new", "nats", "--defaults", "-o"]).arg(&out).assert().success();
        check(&out).success();
    }

    #[test]
    fn sigint_during_generate_restores_the_repository() {
        let (_tmp, dir) = repo();
        fs::write(dir.join("trigger.yaml"), read(&dir, "trigger.yaml") + NEW_FIELD).unwrap();
        let before = tree(&dir);
        assert_eq!(interrupt(&["generate"], &dir, 2, "INT"), Some(130));
        assert_eq!(tree(&dir), before);
        cli().arg("generate").arg(&dir).assert().success();
        check(&dir).success();
    }
}

// 4. Concurrent runs.

#[test]
fn concurrent_generates_never_corrupt_a_repository() {
    let (_tmp, dir) = repo();
    let bin = assert_cmd::cargo::cargo_bin("kubeless-trigger");
    for round in 0..3 {
        let spec = read(&dir, "trigger.yaml");
        let spec = if round % 2 == 0 { spec + NEW_FIELD } else { spec.replace(NEW_FIELD, "") };
        fs::write(dir.join("trigger.yaml"), spec).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&bin)
                    .arg("generate")
                    .arg(&dir)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(2) => assert!(
                    stderr.contains("another kubeless-trigger is writing this repository"),
                    "{stderr}"
                ),
                code => panic!("round {round}: exit {code:?}: {stderr}"),
            }
        }
        check(&dir).success();
        assert_eq!(staging_leftovers(&dir), Vec::<String>::new());
    }
}

// 9. Output errors never panic.

#[cfg(unix)]
mod output {
    use super::*;
    use std::process::Stdio;

    fn bin() -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubeless-trigger"));
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Run with stdout a pipe whose reader is already gone (`| head -c1`
    /// after the first byte); the exit code and stderr.
    fn into_closed_pipe(cmd: &mut std::process::Command) -> (Option<i32>, String) {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn into_full_disk(cmd: &mut std::process::Command) -> (Option<i32>, String) {
        let full = fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = cmd.stdout(full).stderr(Stdio::piped()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    #[test]
    fn a_reader_that_went_away_ends_the_output_quietly() {
        let (_tmp, dir) = repo();
        let (code, stderr) = into_closed_pipe(bin().arg("check").arg(&dir));
        assert_eq!((code, stderr.as_str()), (Some(0), ""));
        fs::write(dir.join("Makefile"), "drift\n").unwrap();
        let (code, stderr) = into_closed_pipe(bin().arg("check").arg(&dir));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for args in [
            &["schema"][..],
            &["presets"],
            &["completions", "bash"],
            &["new", "nats", "--dry-run"],
            &["--help"],
        ] {
            let (code, stderr) = into_closed_pipe(bin().args(args));
            assert_eq!(code, Some(0), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{args:?}: {stderr}");
        }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let (_tmp, dir) = repo();
        let check = [&["check"][..], &["check", "--format", "json"]];
        let clap_data = [&["--help"][..], &["--version"], &["new", "--help"]];
        for args in check
            .into_iter()
            .chain([&["schema"][..], &["presets"], &["completions", "bash"]])
            .chain(clap_data)
        {
            let mut cmd = bin();
            cmd.args(args);
            if args[0] == "check" {
                cmd.arg(&dir);
            }
            let (code, stderr) = into_full_disk(&mut cmd);
            assert_eq!(code, Some(1), "{args:?}: {stderr}");
            assert!(
                stderr.contains("cannot write the output") && stderr.contains("No space left"),
                "{stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

// 9. Written files honour the umask, scripts too.

#[cfg(unix)]
#[test]
fn scripts_and_files_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let bin = assert_cmd::cargo::cargo_bin("kubeless-trigger");
    for (umask, file_mode, script_mode) in
        [("077", 0o600, 0o700), ("022", 0o644, 0o755), ("027", 0o640, 0o750)]
    {
        let tmp = TempDir::new().unwrap();
        let out = tmp.path().join("o");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" new nats --defaults -o \"$1\""))
            .arg(&bin)
            .arg(&out)
            .env("NO_COLOR", "1")
            .status()
            .unwrap();
        assert!(status.success());
        let mode = |path: &str| fs::metadata(out.join(path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("Makefile"), file_mode, "umask {umask}: Makefile");
        assert_eq!(mode("script/cluster-up-minikube.sh"), script_mode, "umask {umask}: a script");
    }
}

#[test]
fn new_force_over_another_sources_repository_removes_its_generated_files() {
    let (_tmp, dir) = repo();
    fs::write(dir.join("MYNOTES.md"), "mine\n").unwrap();
    cli().args(["new", "kafka", "--defaults", "--force", "-o"]).arg(&dir).assert().success();
    for gone in ["nats.jsonnet", "nats-trigger-crd.yaml", "tests/integration-tests-nats.bats"] {
        assert!(!dir.join(gone).exists(), "{gone} of the nats render is still there");
    }
    assert_eq!(read(&dir, "MYNOTES.md"), "mine\n", "files that are not ours stay");
    check(&dir).success();
}

#[test]
fn check_reports_a_generated_file_that_no_render_or_lock_explains() {
    let (_tmp, dir) = repo();
    fs::copy(dir.join("nats.jsonnet"), dir.join("old.jsonnet")).unwrap();
    fs::write(dir.join("notes.jsonnet"), "// my own jsonnet\n").unwrap();
    check(&dir).code(1).stdout(contains("unexpected: old.jsonnet")).stdout(contains("notes.jsonnet").not());
}
