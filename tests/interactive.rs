//! `kubeless-trigger new nats` at a real terminal: a pseudo-terminal answers
//! the prompts like a user would, including a wrong answer that is asked again.

use std::fs;
use std::process::Command;

use rexpect::session::{PtySession, spawn_command};
use tempfile::TempDir;

const TIMEOUT_MS: u64 = 20_000;
const DOWN: &str = "\x1b[B";

fn start(args: &[&str], cwd: &std::path::Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeless-trigger"));
    cmd.args(args).current_dir(cwd).env("NO_COLOR", "1").env("TERM", "xterm");
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("spawn in a pty")
}

/// Wait for a yes/no prompt and press one key (confirmations take no Enter).
fn confirm(p: &mut PtySession, prompt: &str, key: &str) {
    p.exp_string(prompt).unwrap_or_else(|e| panic!("waiting for {prompt:?}: {e}"));
    p.send(key).expect("send key");
    p.flush().expect("flush");
}

/// Wait for a prompt, then answer it with a line.
fn answer(p: &mut PtySession, prompt: &str, line: &str) {
    p.exp_string(prompt).unwrap_or_else(|e| panic!("waiting for {prompt:?}: {e}"));
    p.send_line(line).expect("send answer");
}

#[test]
fn new_nats_interactively_with_a_new_validated_field() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "nats", "-o", "out"], tmp.path());

    answer(&mut p, "Kind", "");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    answer(&mut p, "How does a trigger name its functions?", "");
    answer(&mut p, "CI files", "");
    p.exp_string("topic (string, required)").expect("the preset's field is shown");
    confirm(&mut p, "Keep these fields?", "y");
    confirm(&mut p, "Add another spec field?", "y");

    // An invalid name is refused with the reason and asked again.
    answer(&mut p, "Field name", "spec");
    p.exp_string("collides with the resource envelope").expect("reason shown");
    p.send_line("\u{15}maxInFlight").expect("retype (Ctrl-U clears the line)");

    p.exp_string("Type").expect("type prompt");
    p.send(DOWN).expect("down to integer");
    p.send_line("").expect("select integer");
    confirm(&mut p, "Required?", "n");
    answer(&mut p, "Default", "10");
    answer(&mut p, "Description", "Deliveries in flight at once.");
    answer(&mut p, "Minimum", "1");
    answer(&mut p, "Maximum", "1000");
    confirm(&mut p, "Add another spec field?", "n");

    p.exp_string("NATSTrigger").expect("derived kind shown");
    p.exp_string("natstriggers.kubeless.io").expect("CRD name shown");
    p.exp_string("maxInFlight (integer, default 10)").expect("field list shown");
    confirm(&mut p, "Write the repository?", "y");
    p.exp_string("wrote").expect("files written");
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
    let crd = fs::read_to_string(out.join("nats-trigger-crd.yaml")).unwrap();
    assert!(crd.contains("maxInFlight:"), "{crd}");
}

#[test]
fn declining_the_confirmation_writes_nothing() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "kafka", "-o", "out"], tmp.path());
    answer(&mut p, "Kind", "");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    answer(&mut p, "How does a trigger name its functions?", "");
    answer(&mut p, "CI files", "");
    confirm(&mut p, "Keep these fields?", "y");
    confirm(&mut p, "Add another spec field?", "n");
    confirm(&mut p, "Write the repository?", "n");
    p.exp_string("cancelled").expect("cancel message");
    p.exp_eof().expect("exits");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn a_custom_source_starts_empty_and_takes_an_enum_field() {
    let tmp = TempDir::new().unwrap();
    let mut p = start(&["new", "mqtt", "-o", "out"], tmp.path());
    answer(&mut p, "Kind", "");
    answer(&mut p, "API group", "");
    answer(&mut p, "API version", "");
    p.exp_string("How does a trigger name its functions?").expect("association prompt");
    p.send(DOWN).expect("down to functionName");
    p.send_line("").expect("select");
    p.exp_string("CI files").expect("CI prompt");
    p.send(DOWN).expect("down to github");
    p.send_line("").expect("select github");
    confirm(&mut p, "Add a spec field?", "y");
    answer(&mut p, "Field name", "qos");
    p.exp_string("Type").expect("type prompt");
    p.send(&DOWN.repeat(4)).expect("down to enum");
    p.send_line("").expect("select enum");
    answer(&mut p, "Values", "at-most-once, at-least-once");
    confirm(&mut p, "Required?", "n");
    // A default outside the values is refused and asked again.
    answer(&mut p, "Default", "twice");
    p.exp_string("expected one of").expect("reason shown");
    p.send_line("\u{15}at-least-once").expect("retype");
    answer(&mut p, "Description", "Quality of service.");
    confirm(&mut p, "Add another spec field?", "n");
    p.exp_string("MQTTTrigger").expect("derived kind");
    p.exp_string("functionName").expect("association shown");
    confirm(&mut p, "Write the repository?", "y");
    p.exp_eof().expect("exits");

    let spec = fs::read_to_string(tmp.path().join("out/trigger.yaml")).unwrap();
    assert!(spec.contains("association: function"), "{spec}");
    assert!(spec.contains("ci: github"), "{spec}");
    assert!(!tmp.path().join("out/.travis.yml").exists(), "GitHub Actions only");
    assert!(
        spec.contains("type: enum")
            && spec.contains("- at-most-once")
            && spec.contains("default: at-least-once"),
        "{spec}"
    );
    let types = fs::read_to_string(tmp.path().join("out/src/apis/kubeless/v1beta1/mqtt_trigger.rs")).unwrap();
    assert!(types.contains("pub enum MQTTTriggerQos") && types.contains("AtLeastOnce"), "{types}");
}
