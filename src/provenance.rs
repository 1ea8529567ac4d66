//! Which paths the tool can prove it generates. `generate` and `update`
//! delete generated files the spec no longer produces, and the list of such
//! files comes from the lock, which anyone can edit. So before deleting, the
//! path itself must be one that a render of *some* spec writes as a generated
//! file: the output path of a template with the generated header, with its
//! placeholders (`__source__`, `__module__`, `__version__`) filled by any
//! valid name. A user's file (`MYNOTES.md`, `README.md`, `src/event_source.rs`)
//! never qualifies, whatever the lock says.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use regex::RegexSet;

use crate::plan::{Plan, declares_generated};
use crate::render;
use crate::repofile::{self, REPO_FILE_CAP, ReadError};

/// Placeholders in template paths and the names they can stand for (see
/// `names::Names::derive` and the spec's validation).
const PLACEHOLDERS: &[(&str, &str)] = &[
    // A DNS-1123 label starting with a letter.
    ("__source__", "[a-z](?:[-a-z0-9]*[a-z0-9])?"),
    // `<source with _ for ->_trigger`.
    ("__module__", "[a-z][a-z0-9_]*_trigger"),
    // A Kubernetes API version: v1, v2beta1, v1alpha2.
    ("__version__", "v[1-9][0-9]*(?:(?:alpha|beta)[0-9]+)?"),
];

/// The CRD file is built in Rust, not from a template (`names.crd_file`).
const CRD_FILE: &str = "__source__-trigger-crd.yaml";

/// Whether some render writes `path` as a generated file.
pub fn could_generate(path: &str) -> bool {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut patterns: Vec<String> =
            render::generated_template_paths().iter().map(|p| pattern(p)).collect();
        patterns.push(pattern(CRD_FILE));
        // Built from embedded templates and the constants above: a failure is
        // a bug in this file, caught by its tests.
        RegexSet::new(patterns).expect("template path patterns are valid regexes")
    })
    .is_match(path)
}

/// Files in `dir` that are ours but that `render` does not produce: at a path
/// some render writes, and carrying the generated header. What another
/// source's render (or an older spec) left behind; `new --force` removes
/// them and `check` reports them. `.git`, `target` and symlinks are skipped.
pub fn strays(dir: &Path, render: &Plan) -> Result<Vec<String>, ReadError> {
    let mut found = Vec::new();
    walk(dir, "", render, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(dir: &Path, prefix: &str, render: &Plan, found: &mut Vec<String>) -> Result<(), ReadError> {
    let at = dir.join(prefix);
    let entries = fs::read_dir(&at).map_err(|source| ReadError::Io { path: at.clone(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| ReadError::Io { path: at.clone(), source })?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if prefix.is_empty() && matches!(name.as_str(), ".git" | "target")
            || name.starts_with(".kubeless-trigger")
        {
            continue;
        }
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(dir, &rel, render, found)?;
        } else if kind.is_file()
            && render.get(&rel).is_none()
            && could_generate(&rel)
            && let Some(content) = repofile::read_in(dir, &rel, REPO_FILE_CAP)?
            && declares_generated(&content)
        {
            found.push(rel);
        }
    }
    Ok(())
}

/// A template's output path (without `.jinja`) as an anchored regex.
fn pattern(template: &str) -> String {
    let segments: Vec<String> = template
        .split('/')
        .map(|seg| {
            let seg = match seg.strip_prefix("dot-") {
                Some(rest) => format!(".{rest}"),
                None => seg.to_owned(),
            };
            let mut re = regex::escape(&seg);
            for (name, names) in PLACEHOLDERS {
                re = re.replace(name, names);
            }
            re
        })
        .collect();
    format!("^{}$", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Owner;
    use crate::sources;

    #[test]
    fn every_generated_file_of_every_preset_is_provable_and_no_user_file_is() {
        for (name, _) in sources::presets() {
            let spec = sources::preset(name).unwrap();
            let mut spec_v1 = spec.clone();
            spec_v1.version = Some("v2alpha3".into());
            for spec in [spec, spec_v1] {
                for f in render::render(&spec).unwrap().files {
                    assert_eq!(could_generate(&f.path), f.owner == Owner::Generated, "{}: {}", name, f.path);
                }
            }
        }
    }

    #[test]
    fn other_paths_are_not() {
        for path in [
            "MYNOTES.md",
            ".git/config",
            "src/lib.rs.orig",
            "src/apis/kubeless/v0/nats_trigger.rs",
            "x/Makefile",
        ] {
            assert!(!could_generate(path), "{path}");
        }
        assert!(could_generate("src/apis/kubeless/v1/google_pubsub_trigger.rs"));
        assert!(could_generate("google-pubsub-trigger-crd.yaml"));
    }
}
