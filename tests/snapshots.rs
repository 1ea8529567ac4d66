//! Every directory under `snapshots/` is a complete generated repository. This
//! test renders each one again from its own `trigger.yaml` and fails with a
//! unified diff per file when the output changed.
//!
//! Re-bless after an intended template change:
//!     BLESS=1 cargo test --test snapshots
//! then review `git diff snapshots/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use kubeless_trigger::plan::Plan;
use kubeless_trigger::spec::{Association, FieldType, Spec};
use kubeless_trigger::{apply, render, sources, spec};
use similar::TextDiff;

mod common;
use common::openapi;

/// Build output the CI leaves next to a snapshot; never part of the comparison.
const IGNORED: &[&str] = &["target"];

fn snapshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots")
}

fn snapshot_names() -> Vec<String> {
    common::snapshots()
        .iter()
        .filter_map(|dir| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

fn load(name: &str) -> Spec {
    let path = snapshots_dir().join(name).join("trigger.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    spec::from_text(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// Relative paths of every file under `dir`, except ignored build output.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            if IGNORED.contains(&rel.as_str()) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Every difference between a rendered plan and a directory, readable.
fn differences(plan: &Plan, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let on_disk = files_under(dir);
    for f in &plan.files {
        match fs::read_to_string(dir.join(&f.path)) {
            Err(_) => out.push(format!("missing: {}", f.path)),
            Ok(actual) if actual != f.content => {
                let diff = TextDiff::from_lines(&actual, &f.content)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("snapshot/{}", f.path), &format!("rendered/{}", f.path))
                    .to_string();
                out.push(format!("changed: {}\n{diff}", f.path));
            }
            Ok(_) => {}
        }
        #[cfg(unix)]
        if let Ok(meta) = fs::metadata(dir.join(&f.path)) {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            if executable != f.executable {
                out.push(format!("mode: {} should be executable={}", f.path, f.executable));
            }
        }
    }
    let planned: BTreeSet<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    for extra in on_disk.iter().filter(|p| !planned.contains(p.as_str())) {
        out.push(format!("unexpected: {extra} (the render no longer produces it)"));
    }
    out
}

#[test]
fn snapshots_match_a_fresh_render() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for name in snapshot_names() {
        let dir = snapshots_dir().join(&name);
        let plan = render::repository(&load(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if bless {
            for old in files_under(&dir) {
                fs::remove_file(dir.join(old)).expect("remove old snapshot file");
            }
            apply::write(&plan, &dir, true).expect("write snapshot");
            continue;
        }
        let diffs = differences(&plan, &dir);
        if !diffs.is_empty() {
            failures.push(format!("== snapshots/{name}\n{}", diffs.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "snapshots differ from a fresh render (re-bless with `BLESS=1 cargo test --test snapshots`):\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_preset_has_a_snapshot_rendered_from_it() {
    let names = snapshot_names();
    for (preset, _) in sources::presets() {
        assert!(names.iter().any(|n| n == preset), "no snapshot for preset {preset}");
        let recorded = load(preset);
        assert_eq!(
            Some(recorded),
            sources::preset(preset),
            "snapshots/{preset}/trigger.yaml is not the preset"
        );
    }
}

#[test]
fn a_custom_snapshot_uses_every_field_type_and_the_function_association() {
    let presets: Vec<&str> = sources::presets().map(|(name, _)| name).collect();
    let custom: Vec<Spec> =
        snapshot_names().iter().filter(|n| !presets.contains(&n.as_str())).map(|n| load(n)).collect();
    let full = custom.iter().find(|s| {
        s.association == Association::Function
            && FieldType::ALL.iter().all(|t| s.fields.iter().any(|f| f.ty == *t))
    });
    assert!(full.is_some(), "one custom snapshot must use every field type and `association: function`");
}

/// The example trigger objects of every snapshot (examples/trigger.yaml, the
/// README's example, TEST_SPEC_JSON) are valid against the snapshot's CRD.
#[test]
fn every_snapshot_example_is_valid_against_its_crd() {
    for name in snapshot_names() {
        let dir = snapshots_dir().join(&name);
        let spec = load(&name);
        let crd_file = dir.join(format!("{}-trigger-crd.yaml", spec.source));
        let crd: serde_json::Value =
            serde_saphyr::from_str(&fs::read_to_string(&crd_file).unwrap()).expect("the CRD is YAML");
        let schema = openapi::spec_schema(&crd);
        assert!(schema.is_object(), "{name}: no spec schema in {}", crd_file.display());
        let examples = common::example_specs(|path| fs::read_to_string(dir.join(path)).ok());
        assert_eq!(examples.len(), 3, "{name}: every example found");
        for (place, example) in examples {
            let problems = openapi::violations(&example, schema);
            assert!(problems.is_empty(), "{name}: {place} is invalid against its CRD: {problems:#?}");
        }
    }
}

#[test]
fn the_crd_validator_catches_what_the_api_server_would() {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": "string", "pattern": "^x+$", "minLength": 2},
            "n": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 5},
            "e": {"type": "string", "enum": ["p", "q"]},
            "l": {"type": "array", "items": {"type": "boolean"}},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "o": {"type": "string", "nullable": true},
        }
    });
    let good = serde_json::json!({"a": "xx", "n": 5, "e": "q", "l": [true], "m": {"k": "v"}, "o": null});
    assert_eq!(openapi::violations(&good, &schema), Vec::<String>::new());
    let bad = serde_json::json!({"a": "xy", "n": 6, "e": "r", "l": [1], "m": {"k": 1}, "z": 1});
    let got = openapi::violations(&bad, &schema);
    for want in [
        ".a: \"xy\" does not match",
        ".n: 6 is above",
        ".e: \"r\" is not one of",
        ".l[0]: expected boolean",
        ".m.k: expected string",
        ".z: unknown field",
    ] {
        assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
    }
    assert!(openapi::violations(&serde_json::json!({}), &schema)[0].contains("missing required \"a\""));
}
