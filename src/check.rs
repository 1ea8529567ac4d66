//! `check`: compare a repository with a fresh render of its spec, in memory.
//! No writes, no network. Drift is any generated file that is missing,
//! differs or should be gone, and any lock that does not describe the render.
//!
//! The files are always compared with a render, never with the lock's hashes:
//! the lock is a file in the repository like any other, so anyone who can
//! edit a generated file can also edit its recorded hash. The lock only tells
//! ownership and merge bases.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;
use similar::TextDiff;

use crate::lock::{self, LOCK_FILE, Lock, LockError};
use crate::plan::{Owner, Plan};
use crate::repofile::{self, REPO_FILE_CAP, ReadError};
use crate::spec::Spec;
use crate::{provenance, render};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Generated files the render produces but the repository lacks.
    pub missing: Vec<String>,
    /// Generated files whose content differs, with a unified diff each.
    pub changed: Vec<Changed>,
    /// Generated files of the last render that this render no longer produces.
    pub unexpected: Vec<String>,
    /// Problems with the lock file.
    pub lock: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Changed {
    pub path: String,
    pub diff: String,
}

/// Why a repository's lock cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenLockError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Invalid(LockError),
}

/// The lock file as found in a repository.
pub enum LockState {
    Missing,
    Unreadable(String),
    Found(Lock),
}

impl LockState {
    /// A lock that does not parse is reported (and rewritten by `generate`);
    /// one that names a file the tool must never act on is an error.
    pub fn read(dir: &Path) -> Result<LockState, OpenLockError> {
        Ok(match repofile::read_in(dir, LOCK_FILE, REPO_FILE_CAP)? {
            Some(text) => match Lock::parse(&text) {
                Ok(lock) => LockState::Found(lock),
                Err(LockError::Syntax(e)) => LockState::Unreadable(e),
                Err(e) => return Err(OpenLockError::Invalid(e)),
            },
            None => LockState::Missing,
        })
    }

    pub fn lock(&self) -> Option<&Lock> {
        match self {
            LockState::Found(l) => Some(l),
            _ => None,
        }
    }
}

/// Compare `dir` with `render`, the fresh render of `spec`.
pub fn check(dir: &Path, spec: &Spec, render: &Plan, lock_state: &LockState) -> Result<Report, ReadError> {
    let mut report = Report::default();
    for f in render.files.iter().filter(|f| f.owner == Owner::Generated) {
        match repofile::read_in(dir, &f.path, REPO_FILE_CAP)? {
            None => report.missing.push(f.path.clone()),
            Some(actual) if actual != f.content => {
                let diff = TextDiff::from_lines(&actual, &f.content)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{}", f.path), &format!("b/{} (rendered)", f.path))
                    .to_string();
                report.changed.push(Changed { path: f.path.clone(), diff });
            }
            Some(_) => {}
        }
    }
    match lock_state {
        LockState::Missing => {
            report.lock.push(format!("{LOCK_FILE} is missing: run `kubeless-trigger generate` to write it"))
        }
        LockState::Unreadable(e) => report
            .lock
            .push(format!("{LOCK_FILE} is hand-edited or corrupt ({e}): run `kubeless-trigger generate`")),
        LockState::Found(lock) => {
            let ours = env!("CARGO_PKG_VERSION");
            if lock.tool_version != ours {
                report.lock.push(format!(
                    "{LOCK_FILE} was written by kubeless-trigger {}, this is {ours}: run `kubeless-trigger update`",
                    lock.tool_version
                ));
            } else if lock.templates_hash != render::templates_hash() {
                report.lock.push(format!(
                    "{LOCK_FILE} was written by another build of kubeless-trigger {ours}: run `kubeless-trigger update`"
                ));
            }
            if lock.spec_hash != lock::spec_hash(spec) {
                report.lock.push(
                    "trigger.yaml changed since the last render: run `kubeless-trigger generate`".into(),
                );
            }
            for f in render.files.iter().filter(|f| f.owner == Owner::Generated) {
                match lock.get(&f.path) {
                    Some(entry) if entry.hash == lock::hash(&f.content) => {}
                    Some(_) => {
                        report.lock.push(format!("{LOCK_FILE} records a different render of {}", f.path))
                    }
                    None => report.lock.push(format!("{LOCK_FILE} does not list {}", f.path)),
                }
            }
            for gone in lock.files.iter().filter(|l| l.owner == Owner::Generated) {
                if render.get(&gone.path).is_some() || fs::symlink_metadata(dir.join(&gone.path)).is_err() {
                    continue;
                }
                if provenance::could_generate(&gone.path) {
                    report.unexpected.push(gone.path.clone());
                } else {
                    report.lock.push(format!(
                        "{LOCK_FILE} lists {} as generated, but no template writes that path",
                        gone.path
                    ));
                }
            }
        }
    }
    for stray in provenance::strays(dir, render)? {
        if !report.unexpected.contains(&stray) {
            report.unexpected.push(stray);
        }
    }
    Ok(report)
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.changed.is_empty()
            && self.unexpected.is_empty()
            && self.lock.is_empty()
    }

    /// Diffs, then a summary; for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.changed {
            out.push_str(&c.diff);
        }
        if self.is_clean() {
            out.push_str("ok: every generated file matches trigger.yaml\n");
            return out;
        }
        let _ = writeln!(
            out,
            "drift: {} missing, {} changed, {} unexpected, {} lock problems",
            self.missing.len(),
            self.changed.len(),
            self.unexpected.len(),
            self.lock.len()
        );
        for p in &self.missing {
            let _ = writeln!(out, "  missing:    {p}");
        }
        for c in &self.changed {
            let _ = writeln!(out, "  changed:    {}", c.path);
        }
        for p in &self.unexpected {
            let _ = writeln!(out, "  unexpected: {p} (no longer rendered)");
        }
        for p in &self.lock {
            let _ = writeln!(out, "  lock:       {p}");
        }
        out.push_str("fix: run `kubeless-trigger generate` (generated files are not edited by hand)\n");
        out
    }

    /// The whole report as JSON, for bots.
    pub fn json(&self) -> String {
        let value = serde_json::json!({
            "clean": self.is_clean(),
            "missing": self.missing,
            "changed": self.changed,
            "unexpected": self.unexpected,
            "lock": self.lock,
        });
        serde_json::to_string_pretty(&value).expect("a report serializes")
    }
}
