//! The lock file (`.kubeless-trigger.lock`): what the tool last rendered into
//! a repository. It records the tool version, a hash of the spec, and per file
//! its owner and the hash of its last render; for files the user owns it also
//! keeps that render itself, the merge base `update` needs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::{Owner, Plan, PlannedFile};
use crate::render::{self, GENERATED};
use crate::spec::Spec;

/// Path of the lock file inside a generated repository.
pub const LOCK_FILE: &str = ".kubeless-trigger.lock";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lock {
    /// Version of kubeless-trigger that rendered the files.
    pub tool_version: String,
    /// Hash of that version's templates: with `toolVersion` and `specHash`,
    /// it identifies the render exactly (rendering is deterministic).
    pub templates_hash: String,
    /// Hash of the spec the files were rendered from.
    pub spec_hash: String,
    /// Every rendered file, sorted by path.
    pub files: Vec<LockedFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedFile {
    pub path: String,
    pub owner: Owner,
    /// Hash of the file as last rendered.
    pub hash: String,
    /// The last render itself, for files the user owns (the 3-way merge base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// `sha256:<hex>` of a text.
pub fn hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Hash of a spec's meaning (its canonical JSON), so reformatting or comments
/// in `trigger.yaml` do not count as a change.
pub fn spec_hash(spec: &Spec) -> String {
    hash(&serde_json::to_string(spec).expect("a spec serializes"))
}

impl LockedFile {
    /// The entry for a file as rendered.
    pub fn of(file: &PlannedFile) -> LockedFile {
        LockedFile {
            path: file.path.clone(),
            owner: file.owner,
            hash: hash(&file.content),
            base: (file.owner == Owner::Scaffolded).then(|| file.content.clone()),
        }
    }
}

impl Lock {
    /// A lock written by this version of the tool for `spec`, listing `files`.
    pub fn new(spec: &Spec, mut files: Vec<LockedFile>) -> Lock {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Lock {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            templates_hash: render::templates_hash().to_owned(),
            spec_hash: spec_hash(spec),
            files,
        }
    }

    /// The lock for a fresh render of `spec`.
    pub fn of(plan: &Plan, spec: &Spec) -> Lock {
        Lock::new(spec, plan.files.iter().map(LockedFile::of).collect())
    }

    pub fn get(&self, path: &str) -> Option<&LockedFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The lock file's text.
    pub fn to_text(&self) -> String {
        let body = serde_saphyr::to_string(self).expect("a lock serializes");
        format!(
            "# {GENERATED}\n# kubeless-trigger's record of what it rendered here: `check` compares with it,\n\
             # `generate` and `update` keep it current.\n{body}"
        )
    }

    pub fn parse(text: &str) -> Result<Lock, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{presets, render};

    #[test]
    fn a_lock_round_trips_and_keeps_bases_only_for_user_files() {
        let spec = presets::find("nats").unwrap();
        let plan = render::render(&spec).unwrap();
        let lock = Lock::of(&plan, &spec);
        assert_eq!(Lock::parse(&lock.to_text()).unwrap(), lock);
        let readme = lock.get("README.md").unwrap();
        assert_eq!(readme.owner, Owner::Scaffolded);
        assert!(readme.base.as_deref().is_some_and(|b| b.contains("nats-trigger")));
        assert!(lock.get("src/controller.rs").unwrap().base.is_none());
        assert!(lock.get(LOCK_FILE).is_none(), "the lock does not list itself");
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(hash(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
