//! Presets: specs of the real Kubeless triggers, embedded in the binary.

use include_dir::{Dir, include_dir};

use crate::spec::{self, Spec};

static PRESETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/presets");

/// A preset's name and its spec file text.
pub struct Preset {
    pub name: &'static str,
    pub text: &'static str,
}

/// Every preset, sorted by name.
pub fn all() -> Vec<Preset> {
    let mut out: Vec<Preset> = PRESETS
        .files()
        .filter_map(|f| {
            let name = f.path().to_str()?.strip_suffix(".yaml")?;
            Some(Preset { name, text: f.contents_utf8()? })
        })
        .collect();
    out.sort_by_key(|p| p.name);
    out
}

/// The preset spec for `source`, if there is one.
pub fn find(source: &str) -> Option<Spec> {
    let preset = all().into_iter().find(|p| p.name == source)?;
    Some(spec::from_text(preset.text, &format!("preset {source}")).expect("embedded presets are valid"))
}

impl Preset {
    /// The first line of the preset's description, for `presets` listings.
    pub fn summary(&self) -> String {
        find(self.name).and_then(|s| s.description).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_named_after_their_source() {
        let names: Vec<_> = all().iter().map(|p| p.name).collect();
        assert_eq!(names, ["kafka", "kinesis", "nats"]);
        for p in all() {
            let spec = find(p.name).expect("preset loads");
            assert_eq!(spec.source, p.name);
        }
    }
}
