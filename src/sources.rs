//! Built-in sources: one folder per event source under `sources/`, embedded
//! in the binary. A folder holds the source's preset spec (`preset.yaml`),
//! what it adds to a generated repository (`source.yaml`, see [`Manifest`]),
//! the files it puts there (`src/...`, copied as they are, the first line
//! being the header placeholder) and its test harness (`harness`, `install`,
//! run by scripts/test-all). Adding a source is adding a folder: nothing else
//! in the tool names one.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::spec::{self, Problem, Spec};

static FOLDERS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/sources");

/// The folder files that are not copied into generated repositories.
const FOLDER_FILES: &[&str] = &["source.yaml", "preset.yaml", "harness", "install", "Cargo.lock"];

/// Header placeholders a source file may start with, as its whole first line,
/// and the header each stands for (`render::GENERATED` or `render::SCAFFOLDED`).
pub const HEADER_PLACEHOLDERS: &[&str] = &["{{ generated }}", "{{ scaffolded }}"];

/// `sources/<name>/source.yaml`: what a built-in source adds to a repository.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One line for `kubeless-trigger presets`: what it consumes.
    pub summary: String,
    /// One line: the delivery guarantee.
    pub guarantee: String,
    /// What the source's code gives the runtime (`event_source::source()`).
    #[serde(default)]
    pub kind: Kind,
    /// The association its code serves, when it serves only one (an object
    /// source keeps one object per trigger, for one function).
    #[serde(default)]
    pub association: Option<crate::spec::Association>,
    /// Spec fields the source's code reads, by JSON name, with the Rust type
    /// it reads them as (`String`, `Option<String>`, `i64`, ...).
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
    /// Lines of the generated `Cargo.toml`'s `[dependencies]`.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Debian packages the Dockerfile's build stage installs (C build deps).
    #[serde(default)]
    pub build_packages: Vec<String>,
    /// Environment variables of the controller container (and README rows).
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Where the controller's optional Secret (named like the controller) is
    /// mounted, for sources that read files from it (TLS certificates).
    #[serde(default)]
    pub secret_volume: Option<String>,
    /// Extra RBAC rules of the controller, as Kubernetes `PolicyRule`s.
    #[serde(default)]
    pub rbac: Vec<Rule>,
    /// Recipes of `examples/Makefile`: one shell command per line.
    pub examples: Examples,
    /// Markdown for the generated README.
    pub readme: Readme,
}

/// Whether a source consumes a stream or keeps Kubernetes objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One consumer per (trigger, function) in the controller.
    #[default]
    Stream,
    /// Objects (a CronJob, an Ingress) that deliver without the controller.
    Objects,
}

/// An environment variable of the controller.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    /// The value; empty when `image` is set.
    #[serde(default)]
    pub value: String,
    /// The value is the controller's own image (for objects that run it).
    #[serde(default)]
    pub image: bool,
    /// The value comes from the controller's optional Secret (named like the
    /// controller), under the variable's name: credentials stay out of the manifest.
    #[serde(default)]
    pub secret: bool,
    pub description: String,
}

/// A Kubernetes RBAC `PolicyRule`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// Make recipe lines of `examples/Makefile`; `$(KUBECTL)`, `$(TIMEOUT)` and
/// `$(TOKEN)` are set there.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// Deploy what the source reads from.
    pub source: Vec<String>,
    /// Wait until it is ready.
    pub verify: Vec<String>,
    /// Publish one event whose payload is `{"payload":"$(TOKEN)"}`.
    pub publish: Vec<String>,
    /// Check the function got it; default: its logs show the token and the
    /// Kubeless event headers with the trigger kind's `event-namespace`.
    #[serde(default)]
    pub publish_verify: Vec<String>,
}

/// The README's source-specific paragraphs.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Readme {
    /// Bullet text after the delivery modes: what this source guarantees.
    pub delivery: String,
    /// The body of the "Guarantees" section.
    pub guarantees: String,
    /// The first paragraph of "The event source".
    pub event_source: String,
}

/// One folder of `sources/`.
pub struct Source {
    pub name: &'static str,
    /// The preset spec's text, if the folder has one.
    pub preset: Option<&'static str>,
    /// `source.yaml`; `None` while the folder only has a preset: the source
    /// is a skeleton. Parsed on first use (see [`Source::manifest`]).
    manifest_text: Option<&'static str>,
    manifest: OnceLock<Manifest>,
    /// `(path in a generated repository, text)` of the files it adds.
    pub files: Vec<(String, &'static str)>,
    /// `Cargo.lock`: the lock template of its repositories (see `cargo_lock`).
    pub lock: Option<&'static str>,
}

/// Every source folder, sorted by name.
pub fn all() -> &'static [Source] {
    static ALL: OnceLock<Vec<Source>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out: Vec<Source> = FOLDERS.dirs().filter_map(load).collect();
        out.sort_by_key(|s| s.name);
        out
    })
}

/// The folder of `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Source> {
    all().iter().find(|s| s.name == name)
}

/// `(name, preset text)` of every folder with a preset, sorted by name.
pub fn presets() -> impl Iterator<Item = (&'static str, &'static str)> {
    all().iter().filter_map(|s| Some((s.name, s.preset?)))
}

/// The preset spec of `name`, if its folder has one.
pub fn preset(name: &str) -> Option<Spec> {
    let text = find(name)?.preset?;
    Some(spec::from_text(text, &format!("preset {name}")).expect("embedded presets are valid"))
}

/// The built-in implementation a spec gets: its source's folder, when the
/// folder implements the source and the spec did not opt out (`builtIn: false`).
pub fn built_in(spec: &Spec) -> Option<(&'static Source, &'static Manifest)> {
    let source = find(&spec.source).filter(|_| spec.built_in)?;
    Some((source, source.manifest()?))
}

/// Why `spec` cannot have its built-in implementation: fields the source's
/// code reads that the spec lacks or declares with another Rust type.
pub fn problems(spec: &Spec) -> Vec<Problem> {
    let Some((source, manifest)) = built_in(spec) else { return Vec::new() };
    let kind = crate::names::Names::derive(spec).kind;
    let opt_out = "or set `builtIn: false` to write src/event_source.rs yourself";
    let association = manifest.association.filter(|a| *a != spec.association).map(|wanted| {
        Problem::new(
            "association",
            format!(
                "the built-in {} source serves `association: {}` only; change it, {opt_out}",
                source.name,
                wanted.as_str()
            ),
        )
    });
    let fields = manifest
        .requires
        .iter()
        .filter_map(|(name, wanted)| {
            let Some((i, field)) = spec.fields.iter().enumerate().find(|(_, f)| f.name == *name) else {
                return Some(Problem::new(
                    "fields",
                    format!(
                        "the built-in {} source reads a field `{name}` ({}); add it, {opt_out}",
                        source.name,
                        declaration_of(wanted)
                    ),
                ));
            };
            let found = crate::model::rust_type(&kind, field);
            let rust_name = field.rust_name.clone().unwrap_or_else(|| crate::names::rust_field_name(name));
            if found != *wanted {
                Some(Problem::new(
                    format!("fields[{i}]"),
                    format!(
                        "the built-in {} source reads `{name}` as `{wanted}` ({}), but this declaration makes it `{found}`; change it, {opt_out}",
                        source.name,
                        declaration_of(wanted)
                    ),
                ))
            } else if rust_name != crate::names::rust_field_name(name) {
                Some(Problem::new(
                    format!("fields[{i}].rustName"),
                    format!(
                        "the built-in {} source reads `{name}` under its default Rust name; drop `rustName`, {opt_out}",
                        source.name
                    ),
                ))
            } else {
                None
            }
        })
        .collect::<Vec<_>>();
    association.into_iter().chain(fields).collect()
}

/// How a spec declares a field of Rust type `ty`, for error messages.
fn declaration_of(ty: &str) -> String {
    let (inner, optional) = match ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        Some(inner) => (inner, true),
        None => (ty, false),
    };
    let spec_type = match inner {
        "String" => "string".to_owned(),
        "i64" => "integer".to_owned(),
        "f64" => "number".to_owned(),
        "bool" => "boolean".to_owned(),
        "SecretKeyRef" => "secretKeyRef".to_owned(),
        "serde_json::Value" => "object".to_owned(),
        "BTreeMap<String, String>" => "map".to_owned(),
        other => match other.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
            Some(item) => format!("list, items: {}", declaration_of(item).trim_start_matches("type: ")),
            None => other.to_owned(),
        },
    };
    if optional {
        format!("type: {spec_type}, not required, no default")
    } else {
        format!("type: {spec_type}, required or with a default")
    }
}

fn load(dir: &'static Dir<'static>) -> Option<Source> {
    let name = dir.path().to_str()?;
    let text = |file: &str| dir.get_file(dir.path().join(file)).and_then(|f| f.contents_utf8());
    let mut files = Vec::new();
    collect(dir, name, &mut files);
    files.sort();
    Some(Source {
        name,
        preset: text("preset.yaml"),
        manifest_text: text("source.yaml"),
        manifest: OnceLock::new(),
        files,
        lock: text("Cargo.lock"),
    })
}

fn collect(dir: &'static Dir<'static>, root: &str, out: &mut Vec<(String, &'static str)>) {
    for file in dir.files() {
        let Some(path) =
            file.path().to_str().and_then(|p| p.strip_prefix(root)).map(|p| p.trim_start_matches('/'))
        else {
            continue;
        };
        let in_tree = file.path().to_str().map(|p| format!("sources/{p}")).unwrap_or_default();
        if FOLDER_FILES.contains(&path) || !crate::render_inputs::is_render_input(&in_tree) {
            continue;
        }
        if let Some(text) = file.contents_utf8() {
            out.push((path.to_owned(), text));
        }
    }
    for sub in dir.dirs() {
        collect(sub, root, out);
    }
}

impl Source {
    /// What the folder adds to a repository, `None` for a skeleton. Parsed on
    /// first use: a command needs its own source's manifest, not every one.
    pub fn manifest(&self) -> Option<&Manifest> {
        let text = self.manifest_text?;
        Some(self.manifest.get_or_init(|| {
            serde_saphyr::from_str(text)
                .unwrap_or_else(|e| panic!("sources/{}/source.yaml is not a valid manifest: {e}", self.name))
        }))
    }

    /// One line for `kubeless-trigger presets`.
    pub fn summary(&self) -> String {
        match self.manifest() {
            Some(m) => format!("{}; {}", m.summary, m.guarantee),
            None => {
                "skeleton only: src/event_source.rs is yours to write; at-most-once until it acknowledges"
                    .to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_folder_loads_and_its_preset_is_its_own() {
        let names: Vec<_> = all().iter().map(|s| s.name).collect();
        assert!(names.contains(&"nats"), "{names:?}");
        for source in all() {
            if source.preset.is_some() {
                let spec = preset(source.name).expect("preset loads");
                assert_eq!(spec.source, source.name);
                assert!(spec::validate(&spec).is_empty(), "{}: {:?}", source.name, spec::validate(&spec));
            }
            for (path, text) in &source.files {
                let first = text.lines().next().unwrap_or_default();
                assert!(
                    HEADER_PLACEHOLDERS.iter().any(|h| first.ends_with(h)),
                    "sources/{}/{path} must start with a header placeholder line",
                    source.name
                );
                assert!(!path.contains(".."), "{path}");
            }
            assert_eq!(source.manifest().is_some(), !source.files.is_empty(), "{}", source.name);
            for env in source.manifest().iter().flat_map(|m| &m.env) {
                assert!(
                    u8::from(env.image) + u8::from(env.secret) + u8::from(!env.value.is_empty()) <= 1,
                    "{}: {} takes one of a value, `image: true` or `secret: true`",
                    source.name,
                    env.name
                );
            }
        }
    }

    #[test]
    fn a_spec_missing_a_field_the_source_reads_is_refused_unless_it_opts_out() {
        let mut spec = preset("nats").unwrap();
        spec.fields[0].name = "subject".into();
        let problems = problems(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "fields");
        assert!(problems[0].message.contains("`topic`"), "{}", problems[0].message);
        assert!(problems[0].message.contains("builtIn: false"), "{}", problems[0].message);

        spec.built_in = false;
        assert!(super::problems(&spec).is_empty());
    }

    #[test]
    fn a_field_of_another_rust_type_is_refused_with_the_declaration_that_fits() {
        let mut spec = preset("nats").unwrap();
        spec.fields[1].required = true;
        let problems = problems(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "fields[1]");
        assert!(
            problems[0].message.contains("as `Option<String>` (type: string, not required, no default)"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_source_that_serves_one_association_refuses_the_other() {
        let mut spec = preset("cronjob").unwrap();
        spec.association = crate::spec::Association::Selector;
        let problems = problems(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "association");
        assert!(problems[0].message.contains("`association: function`"), "{}", problems[0].message);
    }

    /// A source file either takes the place of a template, with the same
    /// kind of header (generated or scaffolded), or adds a path nothing else
    /// renders: never a runtime file, never a second file at one path.
    #[test]
    fn source_files_replace_templates_of_their_own_kind_and_collide_with_nothing_else() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for source in all() {
            for (path, text) in &source.files {
                assert!(
                    !path.contains("__"),
                    "sources/{}/{path}: no placeholders in source paths",
                    source.name
                );
                assert!(
                    !root.join("runtime").join(path).exists(),
                    "sources/{}/{path} would collide with a runtime file",
                    source.name
                );
                let header = text.lines().next().unwrap_or_default();
                if let Ok(template) =
                    std::fs::read_to_string(root.join("templates").join(format!("{path}.jinja")))
                {
                    let template_header = template.lines().next().unwrap_or_default();
                    assert_eq!(
                        header, template_header,
                        "sources/{}/{path}: the header of the template it replaces",
                        source.name
                    );
                }
            }
        }
    }

    #[test]
    fn extra_fields_on_top_of_a_preset_are_welcome() {
        let mut spec = preset("nats").unwrap();
        let mut extra = spec.fields[0].clone();
        extra.name = "priority".into();
        spec.fields.push(extra);
        assert!(problems(&spec).is_empty());
    }
}
