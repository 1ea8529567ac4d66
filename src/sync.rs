//! Bring an existing repository in line with a fresh render, file by file,
//! respecting ownership: `generate` (the spec changed) and `update` (the tool
//! changed). Planning is pure; [`apply`] is the one step that writes.

use std::path::Path;

use serde::Serialize;

use crate::apply::{self, ApplyError};
use crate::lock::{self, LOCK_FILE, Lock, LockedFile};
use crate::plan::{Owner, Plan, PlannedFile};
use crate::render::SPEC_FILE;
use crate::repofile::{self, REPO_FILE_CAP, ReadError};
use crate::spec::Spec;

/// What happens to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// New file written.
    Created,
    /// Rewritten with the new render.
    Updated,
    /// A generated file the render no longer produces, unchanged since its
    /// last render: deleted.
    Removed,
    /// Already as rendered.
    Unchanged,
    /// The user's file: left as it is.
    Kept,
    /// A generated file the render no longer produces, but edited by hand: left in place.
    KeptEdited,
    /// The user's changes and the new render merged without conflict.
    Merged,
    /// The user's changes and the new render touch the same lines: written
    /// with conflict markers.
    Conflict,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Removed => "removed",
            Action::Unchanged => "unchanged",
            Action::Kept => "kept",
            Action::KeptEdited => "kept (edited)",
            Action::Merged => "merged",
            Action::Conflict => "CONFLICT",
        }
    }
}

/// One row of a sync plan.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub path: String,
    pub owner: Owner,
    pub action: Action,
    /// New content to write (`None` when nothing is written or the file is removed).
    #[serde(skip)]
    pub content: Option<String>,
    #[serde(skip)]
    pub executable: bool,
}

/// A sync plan and the lock that describes the repository after it.
#[derive(Debug)]
pub struct SyncPlan {
    pub changes: Vec<Change>,
    pub lock: Lock,
}

/// `generate` rewrites generated files, never touches the user's, and `update`
/// also refreshes the user's files from the new templates (merging edits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Generate,
    Update,
}

fn read(dir: &Path, path: &str) -> Result<Option<String>, ReadError> {
    repofile::read_in(dir, path, REPO_FILE_CAP)
}

/// Decide, file by file, how to bring `dir` to `render` (the fresh render of
/// `spec`), given the lock of the last render (if the repository has one).
pub fn plan(
    dir: &Path,
    spec: &Spec,
    render: &Plan,
    old: Option<&Lock>,
    mode: Mode,
) -> Result<SyncPlan, ReadError> {
    let mut changes = Vec::new();
    let mut locked = Vec::new();
    for f in render.files.iter().filter(|f| f.path != SPEC_FILE) {
        let disk = read(dir, &f.path)?;
        let last = old.and_then(|l| l.get(&f.path));
        let (action, content, entry) = match f.owner {
            Owner::Generated => generated(f, disk.as_deref()),
            Owner::Scaffolded => scaffolded(f, disk.as_deref(), last, mode),
        };
        changes.push(Change {
            path: f.path.clone(),
            owner: f.owner,
            action,
            content,
            executable: f.executable,
        });
        locked.push(entry);
    }
    // Files of the last render that this render no longer produces.
    for gone in old.map(|l| l.files.as_slice()).unwrap_or_default() {
        if render.files.iter().any(|f| f.path == gone.path) || gone.path == SPEC_FILE {
            continue;
        }
        let Some(disk) = read(dir, &gone.path)? else { continue };
        let action = match gone.owner {
            Owner::Generated if lock::hash(&disk) == gone.hash => Action::Removed,
            Owner::Generated => Action::KeptEdited,
            Owner::Scaffolded => Action::Kept,
        };
        if action == Action::KeptEdited {
            // Still listed, so `check` keeps reporting it until it is deleted.
            locked.push(gone.clone());
        }
        changes.push(Change {
            path: gone.path.clone(),
            owner: gone.owner,
            action,
            content: None,
            executable: false,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let spec_entry = render
        .files
        .iter()
        .find(|f| f.path == SPEC_FILE)
        .map(|f| old.and_then(|l| l.get(SPEC_FILE)).cloned().unwrap_or_else(|| LockedFile::of(f)));
    locked.extend(spec_entry);
    Ok(SyncPlan { changes, lock: Lock::new(spec, locked) })
}

fn generated(f: &PlannedFile, disk: Option<&str>) -> (Action, Option<String>, LockedFile) {
    let action = match disk {
        None => Action::Created,
        Some(d) if d == f.content => Action::Unchanged,
        Some(_) => Action::Updated,
    };
    let content = (action != Action::Unchanged).then(|| f.content.clone());
    (action, content, LockedFile::of(f))
}

fn scaffolded(
    f: &PlannedFile,
    disk: Option<&str>,
    last: Option<&LockedFile>,
    mode: Mode,
) -> (Action, Option<String>, LockedFile) {
    let keep = |last: Option<&LockedFile>| last.cloned().unwrap_or_else(|| LockedFile::of(f));
    match (disk, last) {
        // A template new since the last render: write it.
        (None, None) => (Action::Created, Some(f.content.clone()), LockedFile::of(f)),
        // Deleted by the user: stays deleted.
        (None, Some(l)) => (Action::Kept, None, l.clone()),
        (Some(_), _) if mode == Mode::Generate => (Action::Kept, None, keep(last)),
        (Some(d), None) => {
            let action = if d == f.content { Action::Unchanged } else { Action::Kept };
            (action, None, LockedFile::of(f))
        }
        (Some(d), Some(l)) => {
            let base = l.base.clone().unwrap_or_default();
            if base == f.content {
                (if d == f.content { Action::Unchanged } else { Action::Kept }, None, l.clone())
            } else if lock::hash(d) == l.hash {
                (Action::Updated, Some(f.content.clone()), LockedFile::of(f))
            } else {
                match diffy::merge(&base, d, &f.content) {
                    Ok(merged) if merged == d => (Action::Unchanged, None, LockedFile::of(f)),
                    Ok(merged) => (Action::Merged, Some(merged), LockedFile::of(f)),
                    Err(with_markers) => (Action::Conflict, Some(with_markers), LockedFile::of(f)),
                }
            }
        }
    }
}

impl SyncPlan {
    pub fn conflicts(&self) -> Vec<&str> {
        self.changes.iter().filter(|c| c.action == Action::Conflict).map(|c| c.path.as_str()).collect()
    }

    /// The table printed by `generate` and `update`.
    pub fn table(&self, all: bool) -> String {
        let rows: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| all || !matches!(c.action, Action::Unchanged | Action::Kept))
            .collect();
        let mut out = format!("{:<13}  {:<10}  PATH\n", "ACTION", "OWNER");
        for c in &rows {
            out.push_str(&format!("{:<13}  {:<10}  {}\n", c.action.as_str(), c.owner.as_str(), c.path));
        }
        let count = |a: Action| self.changes.iter().filter(|c| c.action == a).count();
        out.push_str(&format!(
            "{} created, {} updated, {} merged, {} conflicts, {} removed, {} unchanged, {} kept\n",
            count(Action::Created),
            count(Action::Updated),
            count(Action::Merged),
            count(Action::Conflict),
            count(Action::Removed),
            count(Action::Unchanged),
            count(Action::Kept) + count(Action::KeptEdited),
        ));
        out
    }

    /// Write the plan into `dir`: all new contents staged first, then moved
    /// into place, then removals, then the lock.
    pub fn apply(&self, dir: &Path) -> Result<(), ApplyError> {
        let mut writes: Vec<PlannedFile> = self
            .changes
            .iter()
            .filter_map(|c| {
                c.content.as_ref().map(|content| PlannedFile {
                    path: c.path.clone(),
                    content: content.clone(),
                    owner: c.owner,
                    executable: c.executable,
                })
            })
            .collect();
        writes.push(PlannedFile::new(LOCK_FILE.to_owned(), self.lock.to_text()));
        let removals: Vec<String> =
            self.changes.iter().filter(|c| c.action == Action::Removed).map(|c| c.path.clone()).collect();
        apply::write_changes(&Plan::new(writes), &removals, dir)
    }
}
