//! Reading the files the tool works on, with limits. A path in a repository
//! (or in its lock) is data, and data can point anywhere: a symlink can lead
//! out of the repository, a FIFO can block a read forever, `/dev/zero` never
//! ends. So repository files are read only when they are regular files
//! reached without a symlink, and nothing is read past a size cap.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Cap for a file of a generated repository (and its lock): far above
/// anything a render produces, far below what hurts.
pub const REPO_FILE_CAP: u64 = 8 << 20;
/// Cap for a spec: a spec is a few kilobytes.
pub const SPEC_CAP: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("refusing to read {}: it is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("refusing to read {}: it is larger than {}", path.display(), human(*cap))]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl ReadError {
    /// Whether the file itself was refused (an input error), rather than the
    /// system failing to read it.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ReadError::NotRegular { .. } | ReadError::TooLarge { .. })
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{bytes} bytes") }
}

/// Read `rel` (a relative path) inside `dir`, or `None` when it does not
/// exist. Refuses symlinks anywhere along `rel`, anything but a regular file,
/// and files larger than `cap`.
pub fn read_in(dir: &Path, rel: &str, cap: u64) -> Result<Option<String>, ReadError> {
    let path = dir.join(rel);
    let refuse = |what| ReadError::NotRegular { path: path.clone(), what };
    let mut at = dir.to_path_buf();
    for part in Path::new(rel).components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ReadError::NotRegular { path: at, what: "a symlink" });
            }
            Ok(_) => {}
            Err(e) if missing(&e) => return Ok(None),
            Err(source) => return Err(ReadError::Io { path: at, source }),
        }
    }
    let meta = fs::symlink_metadata(&path).map_err(|source| ReadError::Io { path: path.clone(), source })?;
    if meta.is_dir() {
        return Err(refuse("a directory"));
    }
    if !meta.is_file() {
        // Checked before opening: opening a FIFO for reading blocks.
        return Err(refuse("a special file (device, FIFO or socket)"));
    }
    let file = File::open(&path).map_err(|source| ReadError::Io { path: path.clone(), source })?;
    // The path could have been swapped since; the open file is what counts.
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(refuse("a special file (device, FIFO or socket)")),
        Err(source) => return Err(ReadError::Io { path, source }),
    }
    read_capped(file, &path, cap).map(Some)
}

/// Read a file given on the command line, following symlinks and accepting
/// pipes (`--spec <(…)`), but never more than `cap` bytes.
pub fn read_arg(path: &Path, cap: u64) -> Result<String, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    read_capped(file, path, cap)
}

/// Read at most `cap` bytes of `reader` as UTF-8; one byte more is an error.
pub fn read_capped(reader: impl Read, path: &Path, cap: u64) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { path: path.to_owned(), cap });
    }
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// A path that is not there, including one whose parent is a file.
fn missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_capped_and_limited_to_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("small"), "abc").unwrap();
        fs::write(dir.join("big"), "x".repeat(11)).unwrap();
        assert_eq!(read_in(dir, "small", 10).unwrap().as_deref(), Some("abc"));
        assert!(matches!(read_in(dir, "big", 10), Err(ReadError::TooLarge { .. })));
        assert_eq!(read_in(dir, "absent/x", 10).unwrap(), None);
        assert_eq!(read_in(dir, "small/x", 10).unwrap(), None, "a parent that is a file");
        fs::create_dir(dir.join("d")).unwrap();
        assert!(matches!(read_in(dir, "d", 10), Err(ReadError::NotRegular { what: "a directory", .. })));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("small"), dir.join("link")).unwrap();
            std::os::unix::fs::symlink(dir.join("d"), dir.join("dlink")).unwrap();
            fs::write(dir.join("d/f"), "f").unwrap();
            assert!(matches!(read_in(dir, "link", 10), Err(ReadError::NotRegular { what: "a symlink", .. })));
            assert!(matches!(read_in(dir, "dlink/f", 10), Err(ReadError::NotRegular { .. })));
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_endless_argument_is_cut_at_the_cap() {
        let err = read_arg(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("/dev/zero") && err.to_string().contains("1 MiB"), "{err}");
    }
}
