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

    /// Parse and validate a lock. The paths in it are data from the
    /// repository, and `generate` acts on them, so every one must name a file
    /// inside the repository that the tool could own.
    pub fn parse(text: &str) -> Result<Lock, LockError> {
        let lock: Lock = serde_saphyr::from_str(text)
            .map_err(|e| LockError::Syntax(e.to_string().lines().next().unwrap_or_default().to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        for (index, f) in lock.files.iter().enumerate() {
            let bad = |why: &'static str| LockError::Entry { index, path: f.path.clone(), why };
            check_path(&f.path).map_err(bad)?;
            if !seen.insert(f.path.as_str()) {
                return Err(bad("is listed twice"));
            }
            if !is_hash(&f.hash) {
                return Err(bad("has a hash that is not sha256:<64 hex digits>"));
            }
        }
        Ok(lock)
    }
}

/// Why a lock cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Not a lock at all (hand-edited or corrupt): `generate` rewrites it.
    #[error("{0}")]
    Syntax(String),
    /// A well-formed lock with an entry the tool must never act on.
    #[error(
        "{LOCK_FILE}: files[{index}] with path {path:?} {why}; the lock is written by \
         kubeless-trigger and cannot name such a file: remove that entry and run `kubeless-trigger generate`"
    )]
    Entry { index: usize, path: String, why: &'static str },
}

/// A path a render could write: relative, `/`-separated and normalized, not
/// in Git's metadata, and not one of the tool's own files.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') || path.contains(':') {
        return Err("is not a relative, `/`-separated path");
    }
    for segment in path.split('/') {
        match segment {
            "" | "." => return Err("is not normalized"),
            ".." => return Err("leaves the repository"),
            ".git" => return Err("is inside Git's metadata"),
            _ => {}
        }
    }
    if path == LOCK_FILE {
        return Err("is the lock itself");
    }
    if path.starts_with(".kubeless-trigger") {
        return Err("is one of kubeless-trigger's own working files");
    }
    Ok(())
}

fn is_hash(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{render, sources};

    #[test]
    fn a_lock_round_trips_and_keeps_bases_only_for_user_files() {
        let spec = sources::preset("nats").unwrap();
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
    fn entries_that_could_reach_outside_the_repository_are_refused() {
        let spec = sources::preset("nats").unwrap();
        let lock = Lock::of(&render::render(&spec).unwrap(), &spec);
        for bad in [
            "",
            "/etc/passwd",
            "/dev/zero",
            "../x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            ".git/config",
            "sub/.git/HEAD",
            "a\\b",
            "C:x",
            LOCK_FILE,
            ".kubeless-trigger-staging-1-2/x",
            "Makefile",
        ] {
            let mut l = lock.clone();
            let mut entry = l.files[0].clone();
            entry.path = bad.to_owned();
            l.files.push(entry);
            let err = Lock::parse(&l.to_text()).unwrap_err();
            assert!(matches!(err, LockError::Entry { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains(LOCK_FILE), "{err}");
        }
        let mut l = lock.clone();
        l.files[0].hash = "sha256:nothex".into();
        assert!(matches!(Lock::parse(&l.to_text()), Err(LockError::Entry { .. })));
        assert!(matches!(Lock::parse("files: ["), Err(LockError::Syntax(_))));
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(hash(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
