//! Plan: the ordered list of files a render produced, each with its owner.

use std::fmt::Write as _;

use crate::render::{GENERATED, SCAFFOLDED};

/// Who owns a file after `new` wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Rewritten by the tool on every render; carries the DO NOT EDIT header.
    Generated,
    /// Written once by `new`; the user's from then on.
    Scaffolded,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Generated => "generated",
            Owner::Scaffolded => "scaffolded",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFile {
    /// Relative, `/`-separated path inside the repository.
    pub path: String,
    pub content: String,
    pub owner: Owner,
    /// Scripts (content starting with `#!`) are written executable.
    pub executable: bool,
}

impl PlannedFile {
    /// The owner is read from the file's own header, the one place a reader
    /// of the generated repository sees it too (see [`has_one_header`]).
    pub fn new(path: String, content: String) -> PlannedFile {
        let owner = if declares_generated(&content) { Owner::Generated } else { Owner::Scaffolded };
        let executable = content.starts_with("#!");
        PlannedFile { path, content, owner, executable }
    }
}

/// Whether `content` carries the generated header in its first lines.
pub fn declares_generated(content: &str) -> bool {
    content.lines().take(6).any(|l| l.contains(GENERATED))
}

/// Whether `content` declares exactly one owner in its first lines.
pub fn has_one_header(content: &str) -> bool {
    let head: String = content.lines().take(6).collect::<Vec<_>>().join("\n");
    head.contains(GENERATED) != head.contains(SCAFFOLDED)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub files: Vec<PlannedFile>,
}

impl Plan {
    /// Files sorted by path, so every listing and write happens in one order.
    pub fn new(mut files: Vec<PlannedFile>) -> Plan {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Plan { files }
    }

    pub fn get(&self, path: &str) -> Option<&PlannedFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The `--dry-run` table: path, owner, size.
    pub fn table(&self) -> String {
        let width = self.files.iter().map(|f| f.path.len()).max().unwrap_or(4).max(4);
        let mut out = format!("{:<width$}  {:<10}  {:>7}\n", "PATH", "OWNER", "BYTES");
        for f in &self.files {
            let _ = writeln!(out, "{:<width$}  {:<10}  {:>7}", f.path, f.owner.as_str(), f.content.len());
        }
        out
    }
}
