//! Apply: the only side effect. Writes a plan into a directory all-or-nothing:
//! everything is staged next to the target first, then moved into place.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::plan::Plan;

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
/// missing or empty. Nothing is written outside `out`; on error, `out` is as
/// it was (a new directory is not left behind).
pub fn write(plan: &Plan, out: &Path, force: bool) -> Result<(), ApplyError> {
    for f in &plan.files {
        check_relative(&f.path)?;
    }
    match fs::symlink_metadata(out) {
        Ok(meta) if !meta.is_dir() => return Err(ApplyError::NotADirectory(out.to_owned())),
        Ok(_) => {
            let empty = fs::read_dir(out).map_err(io_err(out))?.next().is_none();
            if !empty && !force {
                return Err(ApplyError::NotEmpty(out.to_owned()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(out)(e)),
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let staging = tempdir_in(&parent)?;
    let result = stage(plan, &staging).and_then(|()| commit(plan, &staging, out));
    let _ = fs::remove_dir_all(&staging);
    result
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
    Ok(())
}

fn tempdir_in(parent: &Path) -> Result<PathBuf, ApplyError> {
    for n in 0..1000u32 {
        let candidate = parent.join(format!(".kubeless-trigger-staging-{}-{n}", std::process::id()));
        match fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&candidate)(e)),
        }
    }
    Err(io_err(parent)(io::Error::other("no free staging directory name")))
}

fn stage(plan: &Plan, staging: &Path) -> Result<(), ApplyError> {
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

/// Move the staged tree into place: one rename when `out` does not exist,
/// else file by file after checking no existing path component is a symlink.
fn commit(plan: &Plan, staging: &Path, out: &Path) -> Result<(), ApplyError> {
    if !out.exists() {
        return fs::rename(staging, out).map_err(io_err(out));
    }
    for f in &plan.files {
        let mut at = out.to_owned();
        for part in Path::new(&f.path).components() {
            at.push(part);
            if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(ApplyError::UnsafePath { path: f.path.clone(), why: "a symlink is in the way" });
            }
        }
    }
    for f in &plan.files {
        let target = out.join(&f.path);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(staging.join(&f.path), &target).map_err(io_err(&target))?;
    }
    Ok(())
}
