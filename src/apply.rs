//! Apply: the only side effect. Writes a plan into a directory all-or-nothing:
//! every file is staged in a hidden directory inside the output first, then
//! moved into place; nothing is written outside the output directory.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::plan::Plan;

/// Where files are staged, inside the output directory.
const STAGING: &str = ".kubeless-trigger-staging";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{} already exists and is not empty; pass --force to write into it", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("refusing to write {path:?}: {why}")]
    UnsafePath { path: String, why: &'static str },
    #[error("failed to write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io { path: path.to_owned(), source }
}

/// Write every file of `plan` under `out`. Without `force`, `out` must be
/// missing or empty. On error, a directory this call created is removed
/// again and an existing one keeps its files.
pub fn write(plan: &Plan, out: &Path, force: bool) -> Result<(), ApplyError> {
    for f in &plan.files {
        check_relative(&f.path)?;
    }
    let created = match fs::symlink_metadata(out) {
        Ok(meta) if !meta.is_dir() => return Err(ApplyError::NotADirectory(out.to_owned())),
        Ok(_) => {
            let empty = fs::read_dir(out).map_err(io_err(out))?.next().is_none();
            if !empty && !force {
                return Err(ApplyError::NotEmpty(out.to_owned()));
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(io_err(out))?;
            true
        }
        Err(e) => return Err(io_err(out)(e)),
    };

    let result = write_changes(plan, &[], out);
    if result.is_err() && created {
        let _ = fs::remove_dir_all(out);
    }
    result
}

/// Write `plan` into the existing directory `dir` and delete `removals`
/// (relative paths). Every new file is staged before anything is moved into
/// place; removals come last.
pub fn write_changes(plan: &Plan, removals: &[String], dir: &Path) -> Result<(), ApplyError> {
    for path in plan.files.iter().map(|f| &f.path).chain(removals) {
        check_relative(path)?;
        check_no_symlink(dir, path)?;
    }
    let staging = dir.join(STAGING);
    let result = stage(plan, &staging).and_then(|()| commit(plan, &staging, dir));
    let _ = fs::remove_dir_all(&staging);
    result?;
    for path in removals {
        let target = dir.join(path);
        fs::remove_file(&target).map_err(io_err(&target))?;
    }
    Ok(())
}

/// Refuse a path whose existing components include a symlink, which could
/// lead a write or a removal outside the directory.
fn check_no_symlink(dir: &Path, path: &str) -> Result<(), ApplyError> {
    let mut at = dir.to_owned();
    for part in Path::new(path).components() {
        at.push(part);
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ApplyError::UnsafePath { path: path.to_owned(), why: "a symlink is in the way" });
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
    if p.components().next().is_some_and(|c| c.as_os_str() == STAGING) {
        return bad("path is the tool's staging directory");
    }
    Ok(())
}

fn stage(plan: &Plan, staging: &Path) -> Result<(), ApplyError> {
    if fs::symlink_metadata(staging).is_ok() {
        fs::remove_dir_all(staging).map_err(io_err(staging))?;
    }
    for f in &plan.files {
        let path = staging.join(&f.path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::write(&path, &f.content).map_err(io_err(&path))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Move the staged files into place.
fn commit(plan: &Plan, staging: &Path, out: &Path) -> Result<(), ApplyError> {
    for f in &plan.files {
        let target = out.join(&f.path);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(staging.join(&f.path), &target).map_err(io_err(&target))?;
    }
    Ok(())
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
