//! The non-Rust artifacts of every snapshot repository, checked for what their
//! own tools cannot see: least-privilege RBAC, a restricted Deployment, and CI
//! files (Travis, GitHub Actions) whose jobs use Makefile targets and scripts
//! that exist, with least privilege and pinned actions.
//! (scripts/test-all runs the tools themselves: kubernetes-validate, shellcheck,
//! bats, hadolint, actionlint, yamllint.) Needs the `jsonnet` binary; without it the tests fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::snapshots;

fn source_of(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("trigger.yaml")).unwrap();
    let spec: Value = serde_saphyr::from_str(&text).unwrap();
    spec["source"].as_str().unwrap().to_owned()
}

/// The manifest stream the repository's jsonnet renders, one JSON value per document.
fn manifests(dir: &Path, tla: &[(&str, &str)]) -> Vec<Value> {
    let mut cmd = Command::new("jsonnet");
    cmd.current_dir(dir).arg("-S");
    for (k, v) in tla {
        cmd.arg("--tla-str").arg(format!("{k}={v}"));
    }
    let out = cmd
        .arg(format!("{}.jsonnet", source_of(dir)))
        .output()
        .expect("the `jsonnet` binary is required (scripts/install-tools installs it)");
    assert!(out.status.success(), "jsonnet failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text).expect("a YAML stream")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The rules the generated controller needs, reviewed against what it calls:
/// watch + finalizer patches on its triggers, status patches, function reads,
/// the function Service's port, and Events (created, then patched as series);
/// then what the snapshot's built-in source calls itself.
fn reviewed_rules(group: &str, plural: &str, snapshot: &str) -> Value {
    let mut rules = json!([
        {"apiGroups": [group], "resources": [plural], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [group], "resources": [format!("{plural}/status")], "verbs": ["patch"]},
        {"apiGroups": ["kubeless.io"], "resources": ["functions"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]);
    let source = match snapshot {
        // Reads its CronJob (adoption check), applies it (create when missing), deletes it without a function.
        "cronjob" => {
            json!([{"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "create", "patch", "delete"]}])
        }
        // Reads its Ingress (adoption check), applies it (create when missing), deletes it without a function.
        "http" => {
            json!([{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "create", "patch", "delete"]}])
        }
        // Reads the credentials Secret; keeps checkpoints in a ConfigMap by server-side apply.
        "kinesis" => json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
        ]),
        _ => json!([]),
    };
    rules.as_array_mut().unwrap().extend(source.as_array().unwrap().iter().cloned());
    rules
}

#[test]
fn rbac_is_exactly_the_reviewed_least_privilege_list() {
    for dir in snapshots() {
        let docs = manifests(&dir, &[]);
        let crd = of_kind(&docs, "CustomResourceDefinition")[0];
        let (group, plural) =
            (crd["spec"]["group"].as_str().unwrap(), crd["spec"]["names"]["plural"].as_str().unwrap());
        let roles = of_kind(&docs, "ClusterRole");
        assert_eq!(roles.len(), 1, "{}", dir.display());
        let snapshot = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(roles[0]["rules"], reviewed_rules(group, plural, &snapshot), "{}", dir.display());
        assert!(!serde_json::to_string(&roles[0]).unwrap().contains("\"*\""), "no wildcard");
        let binding = of_kind(&docs, "ClusterRoleBinding")[0];
        let sa = of_kind(&docs, "ServiceAccount")[0];
        assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"], "bound to its own account");
        assert_ne!(sa["metadata"]["name"], "controller-acct", "does not borrow the Kubeless core account");
    }
}

#[test]
fn a_namespace_scoped_controller_gets_a_role_not_a_cluster_role() {
    let dir = &snapshots()[0];
    let docs = manifests(dir, &[("functions_namespace", "team-a")]);
    assert!(of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty());
    assert_eq!(of_kind(&docs, "Role")[0]["metadata"]["namespace"], "team-a");
    assert_eq!(of_kind(&docs, "RoleBinding")[0]["roleRef"]["kind"], "Role");
    let env = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let scoped = env.as_array().unwrap().iter().find(|e| e["name"] == "FUNCTIONS_NAMESPACE").unwrap();
    assert_eq!(scoped["value"], "team-a");
}

#[test]
fn the_deployment_meets_the_restricted_pod_security_standard() {
    for dir in snapshots() {
        let docs = manifests(&dir, &[("image", "example/controller:test")]);
        let deployment = of_kind(&docs, "Deployment")[0];
        assert_eq!(deployment["apiVersion"], "apps/v1");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "example/controller:test", "the image is a parameter");
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(c["resources"][kind][resource].is_string(), "{}: {kind}.{resource}", dir.display());
            }
        }
        assert_eq!(pod["serviceAccountName"], of_kind(&docs, "ServiceAccount")[0]["metadata"]["name"]);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
    }
}

/// Targets a Makefile defines (`name:` at the start of a line).
fn make_targets(makefile: &str) -> BTreeSet<String> {
    makefile
        .lines()
        .filter(|l| !l.starts_with(['\t', '#', '.', ' ']))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t.trim()))
        .filter(|t| !t.is_empty() && !t.contains('=') && !t.contains('%') && !t.contains('$'))
        .flat_map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Every `make` target and repository script a CI command runs exists (and
/// the scripts are executable).
fn assert_commands_exist(dir: &Path, ci: &str, commands: &[String]) {
    let targets = make_targets(&fs::read_to_string(dir.join("Makefile")).unwrap());
    for command in commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if *w == "make" {
                let named: Vec<&&str> = words[i + 1..].iter().take_while(|a| !a.contains('=')).collect();
                assert!(!named.is_empty(), "{}: {ci} runs `make` without a target", dir.display());
                for target in named {
                    assert!(targets.contains(*target), "{}: {ci} runs `make {target}`", dir.display());
                }
            }
            if let Some(script) = w.strip_prefix("./").or(w.starts_with("script/").then_some(*w)) {
                let path = dir.join(script);
                assert!(path.is_file(), "{}: {ci} runs missing {script}", dir.display());
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    assert!(
                        fs::metadata(&path).unwrap().permissions().mode() & 0o111 != 0,
                        "{script} is executable"
                    );
                }
            }
        }
    }
}

#[test]
fn travis_has_the_four_jobs_and_uses_targets_and_scripts_that_exist() {
    let with_travis: Vec<PathBuf> =
        snapshots().into_iter().filter(|d| d.join(".travis.yml").is_file()).collect();
    assert!(!with_travis.is_empty(), "some snapshot has a Travis file");
    for dir in with_travis {
        let travis: Value =
            serde_saphyr::from_str(&fs::read_to_string(dir.join(".travis.yml")).unwrap()).unwrap();
        let jobs = travis["jobs"]["include"].as_array().unwrap();
        let stages: Vec<&str> = jobs.iter().map(|j| j["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["build", "e2e", "push latest", "release"], "{}", dir.display());
        let conditions: Vec<(&str, &str)> = travis["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?, s["if"].as_str()?)))
            .collect();
        assert_eq!(
            conditions,
            [("push latest", "branch = main AND type = push"), ("release", "tag IS present")]
        );
        let commands: Vec<String> = jobs
            .iter()
            .flat_map(|j| ["before_install", "script", "after_success"].map(|k| j[k].clone()))
            .filter_map(|v| v.as_array().cloned())
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert!(commands.iter().any(|c| c.contains("make lint test")), "the build job runs the unit tests");
        assert!(
            commands.iter().any(|c| c == "script/install-kubeless-trigger"),
            "the build job installs the tool"
        );
        assert_commands_exist(&dir, "travis", &commands);
    }
}

#[test]
fn the_github_workflow_has_the_four_jobs_least_privilege_and_pinned_actions() {
    let with_github: Vec<PathBuf> =
        snapshots().into_iter().filter(|d| d.join(".github/workflows/ci.yml").is_file()).collect();
    assert!(!with_github.is_empty(), "some snapshot has a GitHub workflow");
    for dir in with_github {
        let text = fs::read_to_string(dir.join(".github/workflows/ci.yml")).unwrap();
        let workflow: Value = serde_saphyr::from_str(&text).unwrap();
        let jobs = workflow["jobs"].as_object().unwrap();
        let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
        assert_eq!(names, ["build", "e2e", "push-latest", "release"], "{}", dir.display());
        assert_eq!(jobs["e2e"]["needs"], "build");
        for (job, condition) in [
            ("push-latest", "github.event_name == 'push' && github.ref == 'refs/heads/main'"),
            ("release", "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')"),
        ] {
            assert_eq!(jobs[job]["needs"], "e2e", "{job} ships only what e2e tested");
            assert_eq!(jobs[job]["if"], condition, "{job}");
        }
        assert_eq!(workflow["permissions"], json!({ "contents": "read" }), "read-only by default");
        for (job, body) in jobs {
            let expected = if job == "release" { json!({ "contents": "write" }) } else { Value::Null };
            assert_eq!(body["permissions"], expected, "{job}: only the release writes");
            let uses_secrets = serde_json::to_string(body).unwrap().contains("secrets.");
            assert_eq!(
                uses_secrets,
                job == "push-latest" || job == "release",
                "{job}: secrets only where it pushes"
            );
        }
        assert_eq!(
            workflow["concurrency"]["cancel-in-progress"],
            "${{ !startsWith(github.ref, 'refs/tags/') }}"
        );
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
        {
            assert!(is_pinned(line), "{}: not pinned to a commit with its version: {line}", dir.display());
        }
        let steps: Vec<&Value> = jobs.values().flat_map(|j| j["steps"].as_array().unwrap().iter()).collect();
        let commands: Vec<String> = steps
            .iter()
            .filter_map(|s| s["run"].as_str())
            .flat_map(|r| r.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert!(commands.iter().any(|c| c.contains("rust-version")), "the toolchain comes from Cargo.toml");
        assert!(commands.iter().any(|c| c.contains("make lint test binary update CARGO=\"cargo --locked\"")));
        assert!(commands.iter().any(|c| c == "kubeless-trigger check"));
        assert_commands_exist(&dir, "the workflow", &commands);
    }
}

/// `uses: owner/repo@<40 hex> # v1.2.3`.
fn is_pinned(line: &str) -> bool {
    let Some((_, rest)) = line.split_once("uses: ") else { return false };
    let Some((action, rest)) = rest.split_once('@') else { return false };
    let Some((sha, comment)) = rest.split_once(" # v") else { return false };
    action.contains('/')
        && sha.len() == 40
        && sha.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && comment.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// The words that start commands in the bats tests' bodies.
fn bats_commands(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir.join("tests")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "bats") {
            for line in fs::read_to_string(&path).unwrap().lines().filter(|l| l.starts_with("  ")) {
                let word = line.split_whitespace().next().unwrap_or_default();
                if word.starts_with(|c: char| c.is_ascii_lowercase())
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                {
                    out.insert(word.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn bats_tests_call_only_what_libtest_and_the_examples_define() {
    for dir in snapshots() {
        // Every helper resolves once libtest.bash is loaded, as bats loads it.
        let commands: Vec<String> = bats_commands(&dir)
            .into_iter()
            .filter(|c| !["run", "skip", "if", "fi", "then"].contains(&c.as_str()))
            .collect();
        let script = format!(
            "source script/libtest.bash && for c in {}; do type \"$c\" >/dev/null 2>&1 || echo \"undefined: $c\"; done",
            commands.join(" ")
        );
        let out = Command::new("bash").current_dir(&dir).arg("-c").arg(&script).output().expect("bash");
        let undefined = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && undefined.trim().is_empty(), "{}: {undefined}", dir.display());

        // Every example a test deploys or verifies has its Makefile targets.
        let targets = make_targets(&fs::read_to_string(dir.join("examples/Makefile")).unwrap());
        for entry in fs::read_dir(dir.join("tests")).unwrap().flatten() {
            let text = fs::read_to_string(entry.path()).unwrap();
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [helper, example, ..] = words.as_slice() {
                    let wanted = match *helper {
                        "deploy_example" => example.to_string(),
                        "verify_example" => format!("{example}-verify"),
                        _ => continue,
                    };
                    assert!(
                        targets.contains(&wanted),
                        "{}: examples/Makefile lacks `{wanted}`",
                        dir.display()
                    );
                }
            }
        }
    }
}
