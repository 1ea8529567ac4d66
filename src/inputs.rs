//! Inputs: turn the command line (and a spec file or preset) into a `Spec`.
//! The interactive path lives in `prompt`; both end in the same validation.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::cli::{NewArgs, flag_for};
use crate::error::CliError;
use crate::repofile::{self, SPEC_CAP};
use crate::spec::{self, LoadError, Parsed, Problem, Spec};
use crate::{prompt, sources};

/// What `new` will write, and where.
pub struct Resolved {
    pub spec: Spec,
    pub output: PathBuf,
    /// The spec came from the prompts: answers to save if the write fails.
    pub interactive: bool,
}

/// Collect the spec for `new`: from `--spec`, or from SOURCE's preset (or an
/// empty spec) with flag overrides, then, at a terminal, the prompts.
pub fn resolve(args: &NewArgs) -> Result<Resolved, CliError> {
    let interactive =
        args.spec.is_none() && !args.defaults && !args.no_input && std::io::stdin().is_terminal();
    // A preset or a spec file says how its triggers name functions; an empty
    // spec cannot, and guessing would write a CRD the user never chose.
    let mut association_known = args.spec.is_some() || args.defaults || args.association.is_some();
    let mut parsed = match &args.spec {
        Some(path) => {
            let (text, origin) = read_spec(path)?;
            let parsed = spec::parse(&text, &origin)?;
            if let Some(source) = &args.source
                && *source != parsed.spec.source
            {
                return Err(CliError::Usage(format!(
                    "SOURCE {source:?} disagrees with `source: {}` in {origin}; drop one",
                    parsed.spec.source
                )));
            }
            parsed
        }
        None => match &args.source {
            Some(source) => {
                let preset = sources::preset(source);
                association_known |= preset.is_some();
                Parsed::unlocated(preset.unwrap_or_else(|| Spec::empty(source)), "the command line")
            }
            None if interactive => Parsed::unlocated(Spec::empty(""), "the command line"),
            None => {
                return Err(CliError::Input(LoadError {
                    origin: "the command line".into(),
                    problems: vec![Problem::new(
                        "source",
                        "missing: give the event-source name as SOURCE (e.g. `new nats`) or use --spec FILE",
                    )],
                }));
            }
        },
    };
    let overridden = apply_flags(args, &mut parsed.spec);

    let spec = if interactive {
        // A flag's value is checked before the first question, not after the last.
        let refused: Vec<Problem> =
            overridden.iter().filter_map(|key| flag_problem(key, &parsed.spec)).collect();
        if !refused.is_empty() {
            return Err(CliError::Input(LoadError { origin: "the command line".into(), problems: refused }));
        }
        let options = prompt::Options {
            answered: overridden.clone(),
            output: args.output.clone(),
            force: args.force,
            print: args.print_spec,
        };
        prompt::run(parsed.spec, &options)?
    } else {
        let missing: Vec<Problem> = (!association_known)
            .then(|| Problem::new("association", "missing (--association selector|function)"))
            .into_iter()
            .collect();
        match parsed.validate(&overridden) {
            Ok(spec) if missing.is_empty() => spec,
            Ok(_) => {
                return Err(CliError::Input(LoadError {
                    origin: "the command line".into(),
                    problems: missing,
                }));
            }
            Err(mut e) => {
                for p in &mut e.problems {
                    if let Some(flag) = overridden.iter().find(|k| p.path == **k).and_then(|k| flag_for(k)) {
                        p.message.push_str(&format!(" (set by {flag})"));
                    }
                }
                e.problems.splice(0..0, missing);
                return Err(CliError::Input(e));
            }
        }
    };
    let output = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}-trigger", spec.source)));
    Ok(Resolved { spec, output, interactive })
}

/// What is wrong with the value a flag gave spec key `key`, if anything.
fn flag_problem(key: &str, spec: &Spec) -> Option<Problem> {
    use crate::spec::validate::{check_crate_name, check_group, check_image, check_kind, check_version};
    let result = match key {
        "kind" => check_kind(spec.kind.as_deref()?),
        "group" => check_group(spec.group.as_deref()?),
        "version" => check_version(spec.version.as_deref()?),
        "image" => check_image(spec.image.as_deref()?),
        "crate" => check_crate_name(spec.crate_name.as_deref()?),
        _ => Ok(()),
    };
    let flag = flag_for(key).unwrap_or(key);
    result.err().map(|why| Problem::new(key, format!("{why} (set by {flag})")))
}

/// Apply the override flags; returns the spec keys they set.
fn apply_flags(args: &NewArgs, spec: &mut Spec) -> Vec<&'static str> {
    let mut set = Vec::new();
    let mut put = |key: &'static str, value: &Option<String>, slot: &mut Option<String>| {
        if let Some(v) = value {
            *slot = Some(v.clone());
            set.push(key);
        }
    };
    put("kind", &args.kind, &mut spec.kind);
    put("group", &args.group, &mut spec.group);
    put("version", &args.api_version, &mut spec.version);
    put("image", &args.image, &mut spec.image);
    put("crate", &args.crate_name, &mut spec.crate_name);
    if let Some(a) = args.association {
        spec.association = a.into();
        set.push("association");
    }
    if let Some(c) = args.ci {
        spec.ci = Some(c.into());
        set.push("ci");
    }
    set
}

/// The spec text and where it came from. Capped (a spec is a few kilobytes),
/// so `--spec /dev/zero` or a runaway pipe is refused instead of filling memory.
fn read_spec(path: &Path) -> Result<(String, String), CliError> {
    if path == Path::new("-") {
        let text = repofile::read_capped(std::io::stdin().lock(), Path::new("<stdin>"), SPEC_CAP)
            .map_err(|e| CliError::Usage(format!("spec: {e}")))?;
        return Ok((text, "<stdin>".into()));
    }
    let text = repofile::read_arg(path, SPEC_CAP).map_err(|e| CliError::Usage(format!("spec file: {e}")))?;
    Ok((text, path.display().to_string()))
}
