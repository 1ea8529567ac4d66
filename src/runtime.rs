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
            if !crate::render_inputs::is_render_input(&format!("runtime/src/{name}")) {
                return None;
            }
            Some((format!("src/{name}"), f.contents_utf8()?))
        })
        .collect();
    files.sort();
    files
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
    /// The README's configuration table repeats the runtime's defaults (the
    /// runtime cannot be linked here to derive them): each literal default
    /// `config.rs` passes to `number("NAME", default, min)` is the one the
    /// table shows for NAME.
    #[test]
    fn the_readme_states_the_runtime_defaults() {
        let readme = include_str!("../templates/README.md.jinja");
        let config = super::files()
            .into_iter()
            .find(|(path, _)| path == "src/config.rs")
            .map(|(_, text)| text)
            .expect("the runtime's config.rs");
        let mut checked = 0;
        for call in config.split("number(\"").skip(1) {
            let Some((name, rest)) = call.split_once("\", ") else { continue };
            let default = rest.split(',').next().unwrap_or_default().trim();
            if default.is_empty() || !default.chars().all(|c| c.is_ascii_digit()) || default == "0" {
                continue;
            }
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("README.md.jinja has no row for {name}"));
            assert!(
                row.contains(&format!("`{default}`")),
                "{name}: config.rs defaults to {default}; README: {row}"
            );
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} defaults found in config.rs");
    }

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
