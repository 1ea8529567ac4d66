//! `kubeless-trigger new` at a real terminal: a pseudo-terminal types what a
//! user would, keystroke by keystroke (issue 11's scenarios among them), and
//! the tests check the screen and the files written or saved.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexpect::process::WaitStatus;
use rexpect::session::{PtySession, spawn_command};
use tempfile::TempDir;

const TIMEOUT_MS: u64 = 20_000;
const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";
const BACKSPACE: &str = "\x7f";
const CTRL_C: &str = "\x03";

fn start(args: &[&str], cwd: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeless-trigger"));
    cmd.args(args).current_dir(cwd).env("NO_COLOR", "1").env("TERM", "xterm");
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("spawn in a pty")
}

fn wait(p: &mut PtySession, text: &str) {
    p.exp_string(text).unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"));
}

/// Type `keys` as they are (no Enter added).
fn keys(p: &mut PtySession, keys: &str) {
    p.send(keys).expect("send keys");
    p.flush().expect("flush");
}

/// Wait for a prompt, then type `line` and Enter.
fn answer(p: &mut PtySession, prompt: &str, line: &str) {
    wait(p, prompt);
    keys(p, &format!("{line}{ENTER}"));
}

/// After a refused answer (kept as typed), erase it and type `line`.
fn retype(p: &mut PtySession, typed: &str, line: &str) {
    keys(p, &format!("{}{line}{ENTER}", BACKSPACE.repeat(typed.chars().count())));
}

/// Wait for a list prompt and pick the entry `downs` below the default.
fn pick(p: &mut PtySession, prompt: &str, downs: usize) {
    wait(p, prompt);
    keys(p, &format!("{}{ENTER}", DOWN.repeat(downs)));
}

/// Kind, group, version, association and CI, all at their defaults.
fn default_names(p: &mut PtySession) {
    answer(p, "Kind", "");
    answer(p, "API group", "");
    answer(p, "API version", "");
    pick(p, "How does a trigger name its functions?", 0);
    pick(p, "CI files", 0);
}

/// After "Type": a string field's remaining questions, each left empty
/// but `required` and, for an optional field, the default.
fn plain_string_field(p: &mut PtySession, required: &str, default: Option<&str>) {
    answer(p, "Required?", required);
    answer(p, "Description", "");
    answer(p, "Pattern", "");
    answer(p, "Minimum length", "");
    answer(p, "Maximum length", "");
    if let Some(default) = default {
        answer(p, "Default", default);
    }
}

/// The summary's actions, in menu order when every one is offered.
const WRITE: usize = 0;
const EDIT: usize = 1;
const ADD: usize = 2;
const REMOVE: usize = 3;
const NAMES: usize = 4;
const CANCEL: usize = 5;

#[test]
fn new_nats_interactively_with_a_new_validated_field() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
    default_names(&mut p);
    wait(&mut p, "topic (string, required");
    pick(&mut p, "Keep these fields?", 0);
    answer(&mut p, "Add another spec field?", "y");

    // An invalid name is refused with the reason and asked again.
    answer(&mut p, "Field name", "spec");
    wait(&mut p, "collides with the resource envelope");
    retype(&mut p, "spec", "maxInFlight");
    wait(&mut p, "whole number (i64)");
    keys(&mut p, &format!("{DOWN}{ENTER}"));
    answer(&mut p, "Required?", "n");
    answer(&mut p, "Description", "Deliveries in flight at once.");
    answer(&mut p, "Minimum", "1");
    answer(&mut p, "Maximum", "1000");
    answer(&mut p, "Default", "10");
    answer(&mut p, "Add another spec field?", "n");

    wait(&mut p, "to be written to out");
    wait(&mut p, "NATSTrigger");
    wait(&mut p, "natstriggers.kubeless.io");
    wait(&mut p, "maxInFlight (integer, range 1..1000, default 10)");
    wait(&mut p, "Deliveries in flight at once.");
    pick(&mut p, "What now?", WRITE);
    wait(&mut p, "PATH");
    wait(&mut p, "wrote");
    wait(&mut p, "next: cd out && cargo test");
    p.exp_eof().expect("exits");

    let out = tmp.path().join("out");
    let spec = fs::read_to_string(out.join("trigger.yaml")).unwrap();
    assert!(
        spec.contains("name: maxInFlight") && spec.contains("minimum: 1") && spec.contains("default: 10"),
        "{spec}"
    );
    let types = fs::read_to_string(out.join("src/apis/kubeless/v1beta1/nats_trigger.rs")).unwrap();
    assert!(types.contains("pub max_in_flight: i64"), "{types}");
    assert!(types.contains("#[schemars(range(min = 1, max = 1000))]"), "{types}");
}

/// Issue 11, item 1: `y` then Enter answers one yes/no question; the Enter
/// never answers the next question, and the final confirmation waits.
#[test]
fn yes_no_answers_wait_for_enter_and_no_keystroke_leaks_into_the_next_question() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "sqs", "-o", "out"], tmp.path());
    answer(&mut p, "Kind", "");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    pick(&mut p, "How does a trigger name its functions?", 0);
    pick(&mut p, "CI files", 0);
    wait(&mut p, "Add a spec field?");
    keys(&mut p, "y");
    keys(&mut p, ENTER);
    answer(&mut p, "Field name", "queueUrl");
    pick(&mut p, "Type", 0);
    wait(&mut p, "Required?");
    keys(&mut p, "y");
    keys(&mut p, ENTER);
    // Had the Enter leaked, the description would be empty and this text
    // would land in the pattern.
    answer(&mut p, "Description", "The queue URL.");
    answer(&mut p, "Pattern", "");
    answer(&mut p, "Minimum length", "");
    answer(&mut p, "Maximum length", "");
    wait(&mut p, "Add another spec field?");
    keys(&mut p, "n");
    keys(&mut p, ENTER);
    wait(&mut p, "What now?");
    std::thread::sleep(Duration::from_millis(800));
    assert!(!tmp.path().join("out").exists(), "nothing written before the choice");
    keys(&mut p, ENTER);
    wait(&mut p, "wrote");
    // A skeleton source: the next step names the file to write.
    wait(&mut p, "out/src/event_source.rs");
    p.exp_eof().expect("exits");
    let spec = fs::read_to_string(tmp.path().join("out/trigger.yaml")).unwrap();
    assert!(spec.contains("required: true") && spec.contains("description: The queue URL."), "{spec}");
    assert!(!spec.contains("pattern"), "{spec}");
}

/// Items 2 and 3: a bound is checked against the other bound as it is
/// typed, the default comes last and is checked against every bound, and a
/// refused answer is kept as typed.
#[test]
fn dependent_answers_are_checked_as_typed_and_the_default_comes_last() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "sqs", "-o", "out"], tmp.path());
    default_names(&mut p);
    answer(&mut p, "Add a spec field?", "y");
    answer(&mut p, "Field name", "clientId");
    pick(&mut p, "Type", 0);
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "");
    answer(&mut p, "Pattern", "[a-z(");
    wait(&mut p, "not a valid regular expression");
    wait(&mut p, "(at character");
    wait(&mut p, "[a-z("); // asked again with the text as typed
    retype(&mut p, "[a-z(", "^[a-z]+$");
    answer(&mut p, "Minimum length", "20");
    answer(&mut p, "Maximum length", "5");
    wait(&mut p, "minLength 20 is greater than maxLength 5");
    retype(&mut p, "5", "30");
    answer(&mut p, "Default", "ABC");
    wait(&mut p, "violates the field's length limits");
    retype(&mut p, "ABC", "abcdefghijklmnopqrstuvwxyz");
    answer(&mut p, "Add another spec field?", "y");

    answer(&mut p, "Field name", "qos");
    pick(&mut p, "Type", 1);
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "");
    answer(&mut p, "Minimum", "10");
    answer(&mut p, "Maximum", "1");
    wait(&mut p, "minimum 10 is greater than maximum 1");
    retype(&mut p, "1", "20");
    answer(&mut p, "Default", "50");
    wait(&mut p, "50");
    retype(&mut p, "50", "15");
    answer(&mut p, "Add another spec field?", "n");
    wait(&mut p, "qos (integer, range 10..20, default 15)");
    pick(&mut p, "What now?", WRITE);
    p.exp_eof().expect("exits");
    let spec = fs::read_to_string(tmp.path().join("out/trigger.yaml")).unwrap();
    assert!(spec.contains("minLength: 20") && spec.contains("maxLength: 30"), "{spec}");
    assert!(spec.contains("default: abcdefghijklmnopqrstuvwxyz") && spec.contains("default: 15"), "{spec}");
}

/// Item 4: at the summary, a field is edited (any answer), one removed, one
/// added, the names changed; the preset's fields kept one by one.
#[test]
fn the_summary_edits_removes_adds_and_renames_before_writing() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
    default_names(&mut p);
    pick(&mut p, "Keep these fields?", 1);
    answer(&mut p, "Keep topic", "y");
    answer(&mut p, "Keep stream", "n");
    answer(&mut p, "Add another spec field?", "y");
    answer(&mut p, "Field name", "mode");
    pick(&mut p, "Type", 4);
    answer(&mut p, "Values", "fast, safe");
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "");
    pick(&mut p, "Default", 1); // (none), fast, safe
    answer(&mut p, "Add another spec field?", "y");
    answer(&mut p, "Field name", "extra");
    pick(&mut p, "Type", 3);
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "");
    pick(&mut p, "Default", 0);
    answer(&mut p, "Add another spec field?", "n");
    wait(&mut p, "mode (enum [fast, safe], default \"fast\")");
    // The built-in source reads `stream`: without it nothing can be written.
    wait(&mut p, "Fix these before writing");
    wait(&mut p, "stream");
    // The menu without "Write": Edit, Add, Remove, Names, Cancel.

    // Edit `mode`: its values and default change.
    pick(&mut p, "What now?", EDIT - 1);
    pick(&mut p, "Edit which field?", 1);
    answer(&mut p, "Field name", "");
    pick(&mut p, "Type", 0); // still enum: the menu starts at the current type
    wait(&mut p, "Values");
    keys(&mut p, &format!("{}fast, safe, paranoid{ENTER}", BACKSPACE.repeat("fast, safe".len())));
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "How hard to try.");
    pick(&mut p, "Default", 2); // from `fast` (the current) two down: paranoid
    wait(&mut p, "mode (enum [fast, safe, paranoid], default \"paranoid\")");
    // Remove `extra`.
    pick(&mut p, "What now?", REMOVE - 1);
    pick(&mut p, "Remove which field?", 2);
    // Add `stream` back: the spec is valid again and "Write" is offered.
    pick(&mut p, "What now?", ADD - 1);
    answer(&mut p, "Field name", "stream");
    pick(&mut p, "Type", 0);
    plain_string_field(&mut p, "", Some(""));
    // Add `region`.
    pick(&mut p, "What now?", ADD);
    answer(&mut p, "Field name", "region");
    pick(&mut p, "Type", 0);
    plain_string_field(&mut p, "", Some("eu"));
    // Change the kind.
    pick(&mut p, "What now?", NAMES);
    answer(&mut p, "Kind", "QueueTrigger");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    pick(&mut p, "How does a trigger name its functions?", 0);
    pick(&mut p, "CI files", 0);
    answer(&mut p, "Controller image", "");
    answer(&mut p, "Cargo package name", "");
    wait(&mut p, "QueueTrigger");
    pick(&mut p, "What now?", WRITE);
    p.exp_eof().expect("exits");
    let spec = fs::read_to_string(tmp.path().join("out/trigger.yaml")).unwrap();
    assert!(spec.contains("kind: QueueTrigger"), "{spec}");
    let order: Vec<&str> = spec.lines().filter_map(|l| l.strip_prefix("- name: ")).collect();
    assert_eq!(order, ["topic", "mode", "stream", "region"], "{spec}");
    assert!(spec.contains("- paranoid") && spec.contains("default: paranoid"), "{spec}");
    assert!(spec.contains("description: How hard to try."), "{spec}");
    assert!(!spec.contains("name: extra") && spec.contains("name: region"), "{spec}");
}

/// Item 5 and "declining is not an error": cancel at the summary saves the
/// answers as a spec file that `new --spec` accepts as is, and exits 0.
#[test]
fn cancelling_at_the_summary_saves_the_answers_for_new_spec() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "sqs", "-o", "out"], tmp.path());
    default_names(&mut p);
    answer(&mut p, "Add a spec field?", "y");
    answer(&mut p, "Field name", "queueUrl");
    pick(&mut p, "Type", 0);
    plain_string_field(&mut p, "y", None);
    answer(&mut p, "Add another spec field?", "n");
    pick(&mut p, "What now?", CANCEL);
    wait(&mut p, "not written");
    wait(&mut p, "sqs-trigger.yaml");
    wait(&mut p, "kubeless-trigger new --spec");
    let status = p.process.wait().expect("exit status");
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    assert!(!tmp.path().join("out").exists());
    let saved = tmp.path().join("sqs-trigger.yaml");
    assert!(fs::read_to_string(&saved).unwrap().contains("name: queueUrl"));
    let resumed = Command::new(env!("CARGO_BIN_EXE_kubeless-trigger"))
        .args(["new", "--spec", "sqs-trigger.yaml", "-o", "resumed"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(tmp.path().join("resumed/src/apis/kubeless/v1beta1/sqs_trigger.rs").is_file());
}

/// Ctrl-C at a list prompt: the cursor is shown again, the answers so far
/// are saved (never over an existing file), the exit status is 130.
#[test]
fn ctrl_c_restores_the_cursor_and_saves_the_answers() {
    let tmp = TempDir::new().unwrap();
    fs::write(tmp.path().join("nats-trigger.yaml"), "mine\n").unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
    answer(&mut p, "Kind", "QueueTrigger");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    wait(&mut p, "How does a trigger name its functions?");
    keys(&mut p, CTRL_C);
    let before = p.exp_string("cancelled; nothing was written").expect("the cancel message");
    assert!(before.contains("\x1b[?25h"), "the cursor is shown again: {before:?}");
    let rest = p.exp_eof().expect("exits");
    let status = p.process.wait().expect("exit status");
    assert!(matches!(status, WaitStatus::Exited(_, 130)), "{status:?}");
    assert!(rest.contains("nats-trigger-2.yaml"), "{rest}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("nats-trigger.yaml")).unwrap(),
        "mine\n",
        "never overwritten"
    );
    let saved = fs::read_to_string(tmp.path().join("nats-trigger-2.yaml")).unwrap();
    assert!(saved.contains("kind: QueueTrigger") && saved.contains("name: topic"), "{saved}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn a_non_empty_output_directory_is_refused_before_the_first_question() {
    let tmp = TempDir::new().unwrap();
    fs::create_dir(tmp.path().join("out")).unwrap();
    fs::write(tmp.path().join("out/keep.txt"), "mine").unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
    let shown = p.exp_eof().expect("exits at once");
    assert!(shown.contains("not empty") && !shown.contains("Kind"), "{shown}");
    let status = p.process.wait().expect("exit status");
    assert!(matches!(status, WaitStatus::Exited(_, 2)), "{status:?}");
}

/// Flags that set a spec key skip its question; a keyword field name gets a
/// Rust name question; an empty required answer says why; `--print-spec`
/// prints instead of writing.
#[test]
fn flags_skip_questions_keywords_get_a_rust_name_and_print_spec_writes_nothing() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(
        &[
            "new",
            "sqs",
            "--kind",
            "SQSTrigger",
            "--group",
            "example.com",
            "--api-version",
            "v1",
            "--association",
            "function",
            "--ci",
            "github",
            "--print-spec",
        ],
        tmp.path(),
    );
    let before = p.exp_string("Add a spec field?").expect("the first question");
    assert!(!before.contains("Kind") && !before.contains("CI files"), "flags answered them: {before}");
    keys(&mut p, &format!("y{ENTER}"));
    answer(&mut p, "Field name", "");
    wait(&mut p, "an answer is required");
    keys(&mut p, &format!("type{ENTER}"));
    wait(&mut p, "is a Rust keyword");
    answer(&mut p, "Rust field name", ""); // the suggestion, type_value
    pick(&mut p, "Type", 0);
    plain_string_field(&mut p, "", Some(""));
    answer(&mut p, "Add another spec field?", "");
    wait(&mut p, "What now?");
    wait(&mut p, "Print the spec");
    keys(&mut p, ENTER);
    let printed = p.exp_eof().expect("exits");
    assert!(printed.contains("rustName: type_value") && printed.contains("ci: github"), "{printed}");
    assert!(printed.contains("group: example.com"), "{printed}");
    assert!(!tmp.path().join("sqs-trigger").exists(), "nothing written");
}

/// Review findings: stopping half-way through keeping a preset's fields one
/// by one keeps every field not yet dropped in the saved answers; SIGTERM
/// while a prompt waits saves them too and exits 143, every time.
#[test]
fn a_stop_while_keeping_fields_or_a_sigterm_saves_every_answer() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
    default_names(&mut p);
    pick(&mut p, "Keep these fields?", 1);
    answer(&mut p, "Keep topic", "n");
    wait(&mut p, "Keep stream");
    keys(&mut p, CTRL_C);
    wait(&mut p, "cancelled; nothing was written");
    p.exp_eof().expect("exits");
    let saved = fs::read_to_string(tmp.path().join("nats-trigger.yaml")).unwrap();
    assert!(saved.contains("name: topic") && saved.contains("name: stream"), "{saved}");

    for round in 0..5 {
        let dir = TempDir::new().unwrap();
        let mut p = start(&["new", "nats", "-o", "out"], dir.path());
        answer(&mut p, "Kind", "QueueTrigger");
        wait(&mut p, "API group");
        p.process.signal(rexpect::process::Signal::SIGTERM).expect("SIGTERM");
        wait(&mut p, "interrupted by SIGTERM; nothing was written");
        let rest = p.exp_eof().expect("exits");
        let status = p.process.wait().expect("exit status");
        assert!(matches!(status, WaitStatus::Exited(_, 143)), "round {round}: {status:?}");
        assert!(
            rest.contains("kubeless-trigger new --spec ./nats-trigger.yaml -o out"),
            "round {round}: {rest}"
        );
        let saved = fs::read_to_string(dir.path().join("nats-trigger.yaml")).unwrap();
        assert!(saved.contains("kind: QueueTrigger"), "round {round}: {saved}");
    }
}

/// An Enter typed twice after the last question does not choose "Write":
/// what was typed ahead is dropped before each question.
#[test]
fn keys_typed_ahead_never_answer_the_summary() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "sqs", "-o", "out"], tmp.path());
    default_names(&mut p);
    wait(&mut p, "Add a spec field?");
    keys(&mut p, &format!("n{ENTER}{ENTER}{ENTER}"));
    wait(&mut p, "What now?");
    std::thread::sleep(Duration::from_millis(800));
    assert!(!tmp.path().join("out").exists(), "the stray Enters wrote nothing");
    pick(&mut p, "Cancel", 0);
    p.exp_eof().expect("exits");
}

/// Renaming a field at the summary: a name another field has is refused
/// at once, and a Rust name chosen for the old name is asked again.
#[test]
fn a_rename_is_checked_against_the_other_fields_and_drops_the_old_rust_name() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "sqs", "-o", "out"], tmp.path());
    default_names(&mut p);
    for name in ["type", "zed"] {
        answer(&mut p, "spec field?", "y");
        answer(&mut p, "Field name", name);
        if name == "type" {
            answer(&mut p, "Rust field name", "");
        }
        pick(&mut p, "Type", 3);
        answer(&mut p, "Required?", "");
        answer(&mut p, "Description", "");
        pick(&mut p, "Default", 0);
    }
    answer(&mut p, "Add another spec field?", "n");
    pick(&mut p, "What now?", EDIT);
    pick(&mut p, "Edit which field?", 0);
    wait(&mut p, "Field name");
    keys(&mut p, &format!("{}zed{ENTER}", BACKSPACE.repeat(4)));
    wait(&mut p, "a field named \"zed\" already exists");
    retype(&mut p, "zed", "other");
    pick(&mut p, "Type", 0);
    answer(&mut p, "Required?", "");
    answer(&mut p, "Description", "");
    pick(&mut p, "Default", 0);
    pick(&mut p, "What now?", WRITE);
    p.exp_eof().expect("exits");
    let spec = fs::read_to_string(tmp.path().join("out/trigger.yaml")).unwrap();
    assert!(spec.contains("name: other") && !spec.contains("rustName"), "{spec}");
}

/// A flag's refused value stops the run before the first question;
/// `--print-spec` does not care about the output directory.
#[test]
fn a_bad_flag_stops_before_the_questions_and_print_spec_ignores_the_output() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "kafka", "--image", "Bad Image:1"], tmp.path());
    let shown = p.exp_eof().expect("exits at once");
    assert!(shown.contains("--image") && !shown.contains("Kind"), "{shown}");
    let status = p.process.wait().expect("exit status");
    assert!(matches!(status, WaitStatus::Exited(_, 2)), "{status:?}");

    fs::create_dir(tmp.path().join("full")).unwrap();
    fs::write(tmp.path().join("full/x"), "x").unwrap();
    let mut p = start(&["new", "nats", "--print-spec", "-o", "full"], tmp.path());
    answer(&mut p, "Kind", "");
    p.exp_string("API group").expect("the questions go on");
}

/// Ctrl-D ends the interview at any kind of question (text, list, yes/no):
/// nothing is written, the answers so far are saved, the exit status is 1.
#[test]
fn ctrl_d_at_any_question_ends_the_interview_and_saves_the_answers() {
    const CTRL_D: &str = "\x04";
    let at_text = |p: &mut PtySession| {
        wait(p, "Kind");
        keys(p, &format!("Half{CTRL_D}"));
    };
    let at_list = |p: &mut PtySession| {
        answer(p, "Kind", "QueueTrigger");
        answer(p, "API group", "");
        answer(p, "API version", "");
        wait(p, "How does a trigger name its functions?");
        keys(p, CTRL_D);
    };
    let at_yes_no = |p: &mut PtySession| {
        answer(p, "Kind", "QueueTrigger");
        answer(p, "API group", "");
        answer(p, "API version", "");
        pick(p, "How does a trigger name its functions?", 0);
        pick(p, "CI files", 0);
        pick(p, "Keep these fields?", 1);
        wait(p, "Keep topic");
        keys(p, &format!("y{CTRL_D}"));
    };
    type Stop<'a> = &'a dyn Fn(&mut PtySession);
    let scenarios: [(&str, Stop); 3] = [("text", &at_text), ("list", &at_list), ("yes/no", &at_yes_no)];
    for (what, stop_at) in scenarios {
        let tmp = TempDir::new().unwrap();
        let mut p = start(&["new", "nats", "-o", "out"], tmp.path());
        stop_at(&mut p);
        let rest = p.exp_eof().unwrap_or_else(|e| panic!("{what}: Ctrl-D ends the run: {e}"));
        let status = p.process.wait().expect("exit status");
        assert!(matches!(status, WaitStatus::Exited(_, 1)), "{what}: {status:?}\n{rest}");
        let plain = rest.replace("\x1b[?25h", "");
        assert!(plain.contains("\nerror: the input ended (Ctrl-D"), "{what}: on a line of its own: {rest:?}");
        assert!(rest.contains("nothing was written"), "{what}: {rest}");
        assert!(rest.contains("\x1b[?25h") || what != "list", "{what}: the cursor is shown again: {rest:?}");
        let saved = fs::read_to_string(tmp.path().join("nats-trigger.yaml")).unwrap();
        assert!(saved.contains("name: topic"), "{what}: {saved}");
        assert_eq!(saved.contains("kind: QueueTrigger"), what != "text", "{what}: {saved}");
        assert!(!tmp.path().join("out").exists(), "{what}");
    }
}

/// With colours (no NO_COLOR), a yes/no question shows the answer Enter
/// would take: the default, then the key typed instead of it.
#[test]
fn with_colours_a_yes_no_question_shows_the_key_typed_in_place_of_the_default() {
    let tmp = TempDir::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeless-trigger"));
    cmd.args(["new", "nats", "-o", "out"])
        .current_dir(tmp.path())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(TIMEOUT_MS)).expect("spawn in a pty");
    default_names(&mut p);
    pick(&mut p, "Keep these fields?", 1);
    wait(&mut p, "Keep topic");
    keys(&mut p, "n");
    // What was drawn up to the `no` now shown: the `yes` it replaces is gone.
    let drawn = strip_ansi(&p.exp_string("no").expect("the answer drawn"));
    assert!(!drawn.trim_end().ends_with("yes"), "{drawn:?}");
    keys(&mut p, CTRL_C);
    p.exp_eof().expect("exits");
}

/// `text` without its SGR colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
