//! Apply: the only side effect. Writes a plan into a directory
//! all-or-nothing. Every target is checked before anything is written (a file
//! where a directory must go, or the other way round, is an error up front);
//! new contents are staged in a hidden directory unique to this run inside
//! the output; then each is moved into place, the file it replaces moved
//! aside first, so that any failure, or SIGINT/SIGTERM, moves everything
//! back. The lock file is moved in last, so it never describes files that
//! are not there. Nothing is written outside the output directory.
//!
//! Callers hold the repository's [`RepoGuard`](crate::guard::RepoGuard)
//! (`write` takes it itself), so no other run writes meanwhile, and any
//! staging directory found is the leftover of a run that died.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::guard::{GuardError, RepoGuard};
use crate::lock::LOCK_FILE;
use crate::plan::{Plan, PlannedFile};
use crate::{provenance, signals, testhook};

/// Prefix of the staging directories, inside the output directory; each run
/// appends its pid and a random number.
const STAGING: &str = ".kubeless-trigger-staging";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{} already exists and is not empty; pass --force to write into it", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("refusing to write {path:?}: {why}")]
    UnsafePath { path: String, why: &'static str },
    #[error("cannot write {path}: {blocker} is {why}; nothing was written")]
    Conflict { path: String, blocker: String, why: &'static str },
    #[error("failed to write {}: {source}; nothing was changed", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Read(#[from] crate::repofile::ReadError),
    #[error("interrupted by {}; nothing was changed", signals::name(*.0))]
    Interrupted(i32),
    #[error(
        "{failure}\nrestoring the previous files failed too:\n  {}\nthe previous files are kept in {}",
        problems.join("\n  "),
        staging.display()
    )]
    RollbackFailed { failure: Box<ApplyError>, problems: Vec<String>, staging: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io { path: path.to_owned(), source }
}

/// Write every file of `plan` under `out`. Without `force`, `out` must be
/// missing or empty (leftovers of runs that died do not count). On error, a
/// directory this call created is removed again and an existing one keeps
/// its files, byte for byte.
pub fn write(plan: &Plan, out: &Path, force: bool) -> Result<(), ApplyError> {
    for f in &plan.files {
        check_relative(&f.path)?;
    }
    let _critical = signals::critical();
    let created = match fs::symlink_metadata(out) {
        Ok(meta) if !meta.is_dir() => return Err(ApplyError::NotADirectory(out.to_owned())),
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            match fs::create_dir(out) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io_err(out)(e)),
            }
        }
        Err(e) => return Err(io_err(out)(e)),
    };
    let result = RepoGuard::exclusive(out).map_err(ApplyError::from).and_then(|_guard| {
        clear_leftovers(out)?;
        if !created && !force && !is_empty(out)? {
            return Err(ApplyError::NotEmpty(out.to_owned()));
        }
        // Over an earlier render (another source, say), its generated files
        // that this render does not produce would otherwise stay behind.
        let strays = if created { Vec::new() } else { provenance::strays(out, plan)? };
        write_changes(plan, &strays, out)
    });
    if created && matches!(&result, Err(e) if !matches!(e, ApplyError::Guard(_))) {
        let _ = fs::remove_dir_all(out);
    }
    result
}

/// What `write` would refuse about `out` before writing anything, checked
/// early (before the prompts): a file in its place, or a non-empty
/// directory without `force`. `write` checks again under its guard.
pub fn precheck(out: &Path, force: bool) -> Result<(), ApplyError> {
    match fs::symlink_metadata(out) {
        Ok(meta) if !meta.is_dir() => Err(ApplyError::NotADirectory(out.to_owned())),
        Ok(_) if !force && !is_empty(out)? => Err(ApplyError::NotEmpty(out.to_owned())),
        _ => Ok(()),
    }
}

fn is_empty(dir: &Path) -> Result<bool, ApplyError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if !entry.file_name().to_string_lossy().starts_with(STAGING) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Remove the staging directories of runs that died (the caller holds the
/// guard, so no live run owns one). One that holds files moved aside (the
/// only copy of what a killed run was replacing) is kept and reported.
fn clear_leftovers(dir: &Path) -> Result<(), ApplyError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if !entry.file_name().to_string_lossy().starts_with(STAGING) {
            continue;
        }
        let path = entry.path();
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir && fs::read_dir(path.join(ASIDE)).is_ok_and(|mut d| d.next().is_some()) {
            crate::talk!(
                "warning: {} holds files that a killed kubeless-trigger run had moved aside; \
                 restore what you need from it, then delete it",
                path.display()
            );
            continue;
        }
        let removed = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(io_err(&path))?;
    }
    Ok(())
}

/// Write `plan` into the existing directory `dir` and delete `removals`
/// (relative paths), all or nothing; the lock file, if in `plan`, last.
pub fn write_changes(plan: &Plan, removals: &[String], dir: &Path) -> Result<(), ApplyError> {
    let _critical = signals::critical();
    for f in &plan.files {
        check_relative(&f.path)?;
        check_target(dir, &f.path, false)?;
    }
    for path in removals {
        check_relative(path)?;
        check_target(dir, path, true)?;
    }
    clear_leftovers(dir)?;
    let mut txn = Transaction::begin(dir)?;
    match txn.run(plan, removals) {
        Ok(()) => {
            txn.finish();
            Ok(())
        }
        Err(e) => Err(txn.roll_back(e)),
    }
}

/// Refuse, before anything is written, a target that a move could not
/// replace: a symlink anywhere on its path (it could lead outside), a file
/// where a directory must go, a directory or special file where a file must
/// go. `removal`: the target must be a regular file if it exists.
fn check_target(dir: &Path, path: &str, removal: bool) -> Result<(), ApplyError> {
    let parts: Vec<Component> = Path::new(path).components().collect();
    let mut at = dir.to_owned();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let meta = match fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&at)(e)),
        };
        let conflict = |why| {
            let blocker = parts[..=i].iter().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>();
            Err(ApplyError::Conflict { path: path.to_owned(), blocker: blocker.join("/"), why })
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err(ApplyError::UnsafePath { path: path.to_owned(), why: "a symlink is in the way" });
        } else if !last && !meta.is_dir() {
            return conflict("a file where a directory must go");
        } else if last && meta.is_dir() {
            return conflict("a directory where a file must go");
        } else if last && !meta.is_file() {
            return conflict(if removal {
                "not a regular file"
            } else {
                "a special file where a file must go"
            });
        }
    }
    Ok(())
}

/// Reject absolute paths, `..` and anything else that could leave the output.
fn check_relative(path: &str) -> Result<(), ApplyError> {
    let p = Path::new(path);
    let bad = |why| Err(ApplyError::UnsafePath { path: path.to_owned(), why });
    if path.is_empty() || p.is_absolute() {
        return bad("not a relative path");
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return bad("path leaves the output directory");
    }
    if p.components().next().is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(STAGING)) {
        return bad("path is the tool's staging directory");
    }
    Ok(())
}

/// The mode of a script: `0o755` less the umask, as the shell's own files
/// get, so a script is never more open than the files written beside it.
/// `written` is the mode a new file got (`0o666` less the umask); the umask
/// is read from `/proc/self/status` where there is one, else its execute
/// bits are taken to follow its read bits.
#[cfg(unix)]
fn executable_mode(written: u32) -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    match umask {
        Some(umask) => 0o755 & !umask,
        None => {
            let readable = written & 0o444;
            (written & 0o644) | (readable >> 2)
        }
    }
}

/// Inside the staging directory: new contents, and the files they replace.
const STAGED: &str = "new";
const ASIDE: &str = "old";

/// One step done, and how to undo it.
enum Step {
    /// A directory created for a target.
    MadeDir(PathBuf),
    /// The file at `target` moved to `aside`.
    MovedAside { target: PathBuf, aside: PathBuf },
    /// A staged file moved to `target`.
    Placed(PathBuf),
}

struct Transaction {
    dir: PathBuf,
    staging: PathBuf,
    done: Vec<Step>,
}

impl Transaction {
    /// A staging directory of its own: pid and a random number, so a leftover
    /// of another run never collides with it.
    fn begin(dir: &Path) -> Result<Transaction, ApplyError> {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let staging = dir.join(format!("{STAGING}-{}-{random:016x}", std::process::id()));
        fs::create_dir(&staging).map_err(io_err(&staging))?;
        Ok(Transaction { dir: dir.to_owned(), staging, done: Vec::new() })
    }

    fn run(&mut self, plan: &Plan, removals: &[String]) -> Result<(), ApplyError> {
        for f in &plan.files {
            self.stage(f)?;
        }
        let mut step = 0;
        self.step(step)?;
        let (lock, files): (Vec<&PlannedFile>, Vec<&PlannedFile>) =
            plan.files.iter().partition(|f| f.path == LOCK_FILE);
        for f in files {
            self.place(&f.path)?;
            step += 1;
            self.step(step)?;
        }
        for path in removals {
            self.move_aside(path)?;
            step += 1;
            self.step(step)?;
        }
        for f in lock {
            self.place(&f.path)?;
            step += 1;
            self.step(step)?;
        }
        Ok(())
    }

    /// Between two steps: stop on a signal (or an injected test failure).
    fn step(&self, n: usize) -> Result<(), ApplyError> {
        testhook::at(n).map_err(io_err(&self.dir))?;
        match signals::pending() {
            Some(signal) => Err(ApplyError::Interrupted(signal)),
            None => Ok(()),
        }
    }

    fn stage(&self, f: &PlannedFile) -> Result<(), ApplyError> {
        let path = self.staging.join(STAGED).join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&path, &f.content).map_err(io_err(&path))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            let written = fs::metadata(&path).map_err(io_err(&path))?.permissions().mode();
            fs::set_permissions(&path, fs::Permissions::from_mode(executable_mode(written)))
                .map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Move the staged `path` into place, the file it replaces aside first.
    fn place(&mut self, path: &str) -> Result<(), ApplyError> {
        let target = self.dir.join(path);
        self.make_parents(path)?;
        if fs::symlink_metadata(&target).is_ok() {
            self.move_aside(path)?;
        }
        fs::rename(self.staging.join(STAGED).join(path), &target).map_err(io_err(&target))?;
        self.done.push(Step::Placed(target));
        Ok(())
    }

    fn move_aside(&mut self, path: &str) -> Result<(), ApplyError> {
        let target = self.dir.join(path);
        let aside = self.staging.join(ASIDE).join(path);
        if let Some(parent) = aside.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&target, &aside).map_err(io_err(&target))?;
        self.done.push(Step::MovedAside { target, aside });
        Ok(())
    }

    /// Create the missing directories above `path`, one at a time, so a
    /// roll-back removes exactly those.
    fn make_parents(&mut self, path: &str) -> Result<(), ApplyError> {
        let mut at = self.dir.clone();
        let Some(parent) = Path::new(path).parent() else { return Ok(()) };
        for part in parent.components() {
            at.push(part);
            match fs::create_dir(&at) {
                Ok(()) => self.done.push(Step::MadeDir(at.clone())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&at)(e)),
            }
        }
        Ok(())
    }

    fn finish(self) {
        // Only leftovers remain; a failure here is cleared by the next run.
        let _ = fs::remove_dir_all(&self.staging);
    }

    /// Undo every step, newest first. The staging directory is removed only
    /// when everything was restored: otherwise it holds the only copies.
    fn roll_back(mut self, failure: ApplyError) -> ApplyError {
        let mut problems = Vec::new();
        while let Some(step) = self.done.pop() {
            let undone = match &step {
                Step::Placed(target) => fs::remove_file(target).map_err(|e| (target.clone(), e)),
                Step::MovedAside { target, aside } => {
                    fs::rename(aside, target).map_err(|e| (target.clone(), e))
                }
                Step::MadeDir(dir) => fs::remove_dir(dir).map_err(|e| (dir.clone(), e)),
            };
            if let Err((path, e)) = undone {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        if problems.is_empty() {
            let _ = fs::remove_dir_all(&self.staging);
            failure
        } else {
            ApplyError::RollbackFailed { failure: Box::new(failure), problems, staging: self.staging }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlannedFile;

    fn plan(paths: &[&str]) -> Plan {
        Plan::new(
            paths
                .iter()
                .map(|p| {
                    PlannedFile::new(
                        (*p).to_owned(),
                        "# Code generated by kubeless-trigger. DO NOT EDIT.\n".into(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn paths_that_leave_the_output_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        for bad in ["../escape", "/etc/passwd", "a/../../b", ".kubeless-trigger-staging/x"] {
            let err = write(&plan(&["ok.txt", bad]), &out, false).unwrap_err();
            assert!(matches!(err, ApplyError::UnsafePath { .. }), "{bad}: {err}");
            assert!(!out.exists(), "{bad}: output created");
        }
        assert!(!tmp.path().join("escape").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_in_the_output_cannot_redirect_a_write() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("src")).unwrap();
        let err = write(&plan(&["src/main.rs"]), &out, true).unwrap_err();
        assert!(matches!(err, ApplyError::UnsafePath { .. }), "{err}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(!out.join(STAGING).exists(), "staging removed");
    }

    #[test]
    fn writing_into_a_new_directory_leaves_no_staging_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new");
        write(&plan(&["a/b.txt", "c.txt"]), &out, false).unwrap();
        let mut names: Vec<_> = fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, ["a", "c.txt"]);
    }
}
