//! The controller runtime: the spec-independent Rust of every generated
//! repository (controller, consumers, delivery, invoker, ...). It lives in
//! `runtime/` as an ordinary crate, compiled and tested by this repository,
//! and each file of `runtime/src/` is copied into a generated repository's
//! `src/` as it is, behind the generated-file header. Its `[dependencies]`
//! and `[dev-dependencies]` become the generated `Cargo.toml`'s.

use include_dir::{Dir, include_dir};

static SOURCES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/runtime/src");
const MANIFEST: &str = include_str!("../runtime/Cargo.toml");

/// `(path in the generated repository, source text)` of every runtime file, sorted.
pub fn files() -> Vec<(String, &'static str)> {
    let mut files: Vec<_> = SOURCES
        .files()
        .filter_map(|f| {
            let name = f.path().to_str()?;
            Some((format!("src/{name}"), f.contents_utf8()?))
        })
        .collect();
    files.sort();
    files
}

/// The manifest text, for the templates hash.
pub fn manifest() -> &'static str {
    MANIFEST
}

/// The lines of the runtime manifest's `[section]` table, without its header.
pub fn manifest_section(section: &str) -> &'static str {
    let header = format!("\n[{section}]\n");
    let Some(start) = MANIFEST.find(&header).map(|i| i + header.len()) else { return "" };
    let rest = &MANIFEST[start..];
    rest[..rest.find("\n[").map_or(rest.len(), |i| i + 1)].trim_end()
}

/// The package names of the runtime's `[dependencies]` and
/// `[dev-dependencies]`: a generated package cannot take one of them.
pub fn dependency_names() -> Vec<&'static str> {
    ["dependencies", "dev-dependencies"]
        .into_iter()
        .flat_map(|section| manifest_section(section).lines())
        .filter_map(|line| {
            let (name, _) = line.split_once('=')?;
            let name = name.trim();
            (!name.is_empty() && !name.starts_with('#')).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_file_is_utf8_rust_and_lands_in_src() {
        let files = files();
        assert!(files.len() >= 8, "{files:?}");
        assert!(files.iter().all(|(path, _)| path.starts_with("src/") && path.ends_with(".rs")));
        assert_eq!(SOURCES.files().count(), files.len(), "a runtime file that is not UTF-8 would be lost");
    }

    #[test]
    fn dependency_sections_are_read_whole() {
        let deps = manifest_section("dependencies");
        assert!(deps.starts_with("kube = "), "{deps}");
        assert!(deps.ends_with("prometheus-client = \"0.24\""), "{deps}");

        let dev = manifest_section("dev-dependencies");
        assert!(dev.starts_with("tower-test"), "{dev}");
        assert_eq!(manifest_section("no-such-table"), "");
    }
}
