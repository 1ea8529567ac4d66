//! One writer per repository. Two `generate` runs at once each plan from the
//! same files, then interleave their renames and locks, and the repository
//! ends up matching neither. So every command that writes holds an exclusive
//! advisory lock on the repository, and every command that only reads holds
//! a shared one, for the whole time from reading the files to the last write.
//!
//! The lock is taken on the repository directory itself (`flock` on an open
//! directory): no extra file appears in the repository, and it cannot be lost
//! the way a lock on `.kubeless-trigger.lock` would be when that file is
//! replaced by a rename. A second run does not wait: it fails at once with
//! exit status 2, because waiting could hang CI behind a stuck process, and
//! the plan it would print must be made from the files as the first run left
//! them anyway — running it again is the honest answer.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "another kubeless-trigger is writing this repository ({}); run this command again when it has finished",
        .0.display()
    )]
    Busy(PathBuf),
    #[error("cannot lock {} against concurrent kubeless-trigger runs: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Held for as long as the repository is being read or written; released
/// when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct RepoGuard {
    _dir: File,
}

impl RepoGuard {
    /// For commands that write: no other run may read or write meanwhile.
    pub fn exclusive(dir: &Path) -> Result<RepoGuard, GuardError> {
        RepoGuard::take(dir, File::try_lock)
    }

    /// For commands that only read: others may read too, nobody writes.
    pub fn shared(dir: &Path) -> Result<RepoGuard, GuardError> {
        RepoGuard::take(dir, File::try_lock_shared)
    }

    fn take(
        dir: &Path,
        try_lock: fn(&File) -> Result<(), std::fs::TryLockError>,
    ) -> Result<RepoGuard, GuardError> {
        let file = File::open(dir).map_err(|source| GuardError::Io { path: dir.to_owned(), source })?;
        match try_lock(&file) {
            Ok(()) => Ok(RepoGuard { _dir: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(GuardError::Busy(dir.to_owned())),
            Err(std::fs::TryLockError::Error(source)) => Err(GuardError::Io { path: dir.to_owned(), source }),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_writer_excludes_writers_and_readers_and_readers_share() {
        let tmp = tempfile::tempdir().unwrap();
        let writer = RepoGuard::exclusive(tmp.path()).unwrap();
        assert!(matches!(RepoGuard::exclusive(tmp.path()), Err(GuardError::Busy(_))));
        assert!(matches!(RepoGuard::shared(tmp.path()), Err(GuardError::Busy(_))));
        drop(writer);
        let reader = RepoGuard::shared(tmp.path()).unwrap();
        let _another = RepoGuard::shared(tmp.path()).unwrap();
        assert!(matches!(RepoGuard::exclusive(tmp.path()), Err(GuardError::Busy(_))));
        drop(reader);
    }
}
