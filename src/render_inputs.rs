//! Which files of the tool's own tree a render reads: the templates, the
//! built-in sources' files, the runtime and the schema fixtures. build.rs
//! includes this file too and hashes exactly these files into the lock's
//! `templatesHash`, so the hash and what a render embeds cannot disagree.
//! Editor and system debris (dotfiles, `~` backups, merge leftovers) is
//! never an input, so a stray one neither changes the hash nor gets copied
//! into generated repositories.

/// Where render inputs live, relative to the crate root.
pub const ROOTS: [&str; 5] = ["templates", "sources", "runtime/src", "runtime/Cargo.toml", "src/schemas"];

/// Files of a source folder that a render does not read: the preset is a
/// spec (hashed as the spec), the harness and install script serve tests.
const SOURCE_FOLDER_EXTRAS: [&str; 3] = ["preset.yaml", "harness", "install"];

/// Whether `path` (relative to the crate root, `/`-separated) is read by a render.
pub fn is_render_input(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let debris = path.split('/').any(|segment| segment.starts_with('.'))
        || [".orig", ".rej", "~"].iter().any(|end| name.ends_with(end));
    if debris {
        return false;
    }
    match path.split_once('/') {
        Some(("templates", file)) => file.ends_with(".jinja") || file == "Cargo.lock",
        Some(("sources", rest)) => {
            rest.split_once('/').is_some_and(|(_, file)| !SOURCE_FOLDER_EXTRAS.contains(&file))
        }
        Some(("runtime", file)) => {
            file == "Cargo.toml"
                || file.strip_prefix("src/").is_some_and(|f| !f.contains('/') && f.ends_with(".rs"))
        }
        Some(("src", file)) => {
            file.strip_prefix("schemas/").is_some_and(|f| !f.contains('/') && f.ends_with(".json"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_what_a_render_reads_and_debris_never_is() {
        for input in [
            "templates/Makefile.jinja",
            "templates/dot-github/workflows/ci.yml.jinja",
            "templates/Cargo.lock",
            "sources/nats/source.yaml",
            "sources/nats/Cargo.lock",
            "sources/nats/src/event_source.rs",
            "runtime/src/delivery.rs",
            "runtime/Cargo.toml",
            "src/schemas/condition.json",
        ] {
            assert!(is_render_input(input), "{input}");
        }
        for other in [
            "templates/.DS_Store",
            "templates/Makefile.jinja~",
            "templates/.Makefile.jinja.swp",
            "templates/notes.txt",
            "sources/nats/preset.yaml",
            "sources/nats/harness",
            "sources/nats/install",
            "sources/nats/src/.#event_source.rs",
            "sources/nats/src/event_source.rs.orig",
            "sources/README.md",
            "runtime/src/sub/x.rs",
            "runtime/fixture/lib.rs",
            "src/schemas/x.json.rej",
            "src/render.rs",
        ] {
            assert!(!is_render_input(other), "{other}");
        }
    }
}
