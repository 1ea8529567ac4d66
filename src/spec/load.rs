//! Spec text (YAML or JSON) → a validated `Spec`, or every problem in it.

use std::fmt;

use super::locate::Locations;
use super::{Problem, Spec, shape, validate};

/// Why a spec could not be loaded: a list of problems, each with its key path
/// and, when known, its line and column.
#[derive(Debug)]
pub struct LoadError {
    /// Where the spec came from (`trigger.yaml`, `<stdin>`).
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{} has {n} problem{}:", self.origin, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Parse and validate a spec. Shape errors (unknown keys, wrong types) and
/// meaning errors (bad names, defaults that don't fit) are all reported.
pub fn from_text(text: &str, origin: &str) -> Result<Spec, LoadError> {
    let parsed = parse(text, origin)?;
    parsed.validate(&[])
}

/// A spec that has the right shape, with the positions of its keys, ready to
/// take overrides and then be validated.
#[derive(Debug)]
pub struct Parsed {
    pub spec: Spec,
    origin: String,
    locations: Locations,
}

impl Parsed {
    /// A spec that did not come from a file (a preset edited by flags, say).
    pub fn unlocated(spec: Spec, origin: &str) -> Parsed {
        Parsed { spec, origin: origin.to_owned(), locations: Locations::default() }
    }

    /// Validate; problems under a key in `overridden` (set by a flag, not
    /// by the file) carry no file location.
    pub fn validate(self, overridden: &[&str]) -> Result<Spec, LoadError> {
        let problems: Vec<Problem> = validate(&self.spec)
            .into_iter()
            .map(|p| {
                let top = p.path.split(['.', '[']).next().unwrap_or_default();
                if overridden.contains(&top) { p } else { self.locations.locate(p) }
            })
            .collect();
        if problems.is_empty() { Ok(self.spec) } else { Err(LoadError { origin: self.origin, problems }) }
    }
}

/// Parse a spec and check its shape; meaning is checked by [`Parsed::validate`].
pub fn parse(text: &str, origin: &str) -> Result<Parsed, LoadError> {
    let fail = |problems| LoadError { origin: origin.to_owned(), problems };
    let value: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(fail(vec![parse_problem(text, e)])),
    };
    let locations = Locations::of(text);
    let shape: Vec<Problem> = shape::problems(&value).into_iter().map(|p| locations.locate(p)).collect();
    if !shape.is_empty() {
        // Report the meaning problems too when only typos stood in the way.
        let mut problems = shape;
        let pruned = shape::without_unknown_keys(&value);
        if shape::problems(&pruned).is_empty()
            && let Ok(spec) = serde_json::from_value::<Spec>(pruned)
        {
            for p in validate(&spec) {
                if !problems.iter().any(|q| q.path == p.path) {
                    problems.push(locations.locate(p));
                }
            }
        }
        return Err(fail(problems));
    }
    let spec: Spec =
        serde_json::from_value(value).map_err(|e| fail(vec![Problem::new("", e.to_string())]))?;
    Ok(Parsed { spec, origin: origin.to_owned(), locations })
}

/// A parse error as a problem: at its key path and in this tool's words
/// when it is one a spec writer can make in an otherwise sound document (a
/// repeated key, a `.nan`), else at the top level in the parser's words.
fn parse_problem(text: &str, error: serde_saphyr::Error) -> Problem {
    let location = error.location().map(|l| (l.line() as usize, l.column() as usize));
    let fallback = syntax_message(&error.to_string());
    let mut inner = error;
    while let serde_saphyr::Error::WithSnippet { error, .. } = inner {
        inner = *error;
    }
    let (path, message) = match (&inner, location) {
        (serde_saphyr::Error::NonFiniteFloat { value, .. }, Some(at)) => (
            Locations::of_lenient(text).path_at(at).map(str::to_owned),
            format!("`{value}` is not a finite number; give a number such as `1.5`, or leave the key out"),
        ),
        (serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. }, Some(at)) => (
            Locations::of_lenient(text).path_of_key_after(key, at).map(str::to_owned),
            format!("the key `{key}` appears twice in this mapping; keep one"),
        ),
        _ => (None, fallback.clone()),
    };
    match path {
        Some(path) => Problem { path, message, location },
        None => Problem { path: String::new(), message: fallback, location },
    }
}

/// The parser's first line, without the `error: line L column C:` prefix
/// (the location is reported separately).
fn syntax_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or("not YAML or JSON");
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((position, message)) if position.contains("column") => message.to_owned(),
        _ => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_bad_values_are_reported_together_with_lines() {
        let text = "formatVersion: 1\nsource: nats\nassociation: selector\nfeilds: []\nimage: 3\n";
        let err = from_text(text, "t.yaml").unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| (p.path.as_str(), p.location)).collect();
        assert!(paths.contains(&("feilds", Some((4, 9)))), "{paths:?}");
        assert!(paths.iter().any(|(p, l)| *p == "image" && *l == Some((5, 8))), "{paths:?}");
    }

    #[test]
    fn typos_do_not_hide_meaning_errors() {
        let text = "formatVersion: 1\nsource: nats\ngroup: nodot\nassociation: selector\nfeilds: []\n";
        let err = from_text(text, "t.yaml").unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["feilds", "group"], "{err}");
        assert_eq!(err.problems[1].location, Some((3, 8)));
    }

    #[test]
    fn meaning_errors_carry_lines() {
        let text = "formatVersion: 1\nsource: nats\nassociation: selector\nfields:\n  - name: spec\n    type: string\n";
        let err = from_text(text, "t.yaml").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].path, "fields[0].name");
        assert_eq!(err.problems[0].location, Some((5, 11)));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let err = from_text("source: [nats\n", "t.yaml").unwrap_err();
        assert!(err.problems[0].location.is_some(), "{err}");
    }
}
