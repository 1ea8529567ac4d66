//! Interactive prompts for `new` at a terminal. Every answer is checked with
//! the same validation a spec file gets, and asked again with the reason.

use dialoguer::theme::{ColorfulTheme, SimpleTheme, Theme};
use dialoguer::{Confirm, Input, Select};

use crate::error::CliError;
use crate::names::Names;
use crate::sources;
use crate::spec::{self, Association, Ci, Field, FieldType, ScalarType, Spec};

/// Ask for everything, starting from `start` (a preset or an empty spec),
/// and return a spec that passed validation and that the user confirmed.
pub fn run(start: Spec) -> Result<Spec, CliError> {
    let colorful = ColorfulTheme::default();
    let theme: &dyn Theme = if color_enabled() { &colorful } else { &SimpleTheme };
    let mut spec = start;

    if let Err(why) = spec::validate::check_dns_label(&spec.source) {
        if !spec.source.is_empty() {
            eprintln!("{why}");
        }
        spec.source =
            ask(theme, "Event source name (e.g. nats, kafka, mqtt)", None, spec::validate::check_dns_label)?;
        if let Some(preset) = sources::preset(&spec.source).filter(|_| spec.fields.is_empty()) {
            spec.fields = preset.fields;
            spec.description = preset.description;
            spec.association = preset.association;
        }
    }
    let derived = Names::derive(&Spec { kind: None, ..spec.clone() });
    let kind = ask(theme, "Kind", Some(spec.kind.clone().unwrap_or(derived.kind.clone())), |s| {
        spec::validate::check_kind(s)
    })?;
    spec.kind = (kind != derived.kind).then_some(kind);
    let group = ask(theme, "API group", Some(derived.group.clone()), spec::validate::check_group)?;
    spec.group = (group != crate::names::DEFAULT_GROUP).then_some(group);
    let version = ask(theme, "API version", Some(derived.version.clone()), spec::validate::check_version)?;
    spec.version = (version != crate::names::DEFAULT_VERSION).then_some(version);
    let choice = Select::with_theme(theme)
        .with_prompt("How does a trigger name its functions?")
        .items([
            "functionSelector: a label selector, one trigger to many functions (like Kafka, NATS)",
            "functionName: exactly one function (like Kinesis, CronJob)",
        ])
        .default(usize::from(spec.association == Association::Function))
        .interact()?;
    spec.association = Association::ALL[choice];
    let choices = [Ci::Both, Ci::Github, Ci::Travis];
    let current = spec.ci.unwrap_or_default();
    let choice = Select::with_theme(theme)
        .with_prompt("CI files")
        .items([
            "both: GitHub Actions and Travis CI (.github/workflows/ci.yml, .travis.yml)",
            "github: GitHub Actions only",
            "travis: Travis CI only (the Kubeless guide's)",
        ])
        .default(choices.iter().position(|c| *c == current).unwrap_or(0))
        .interact()?;
    spec.ci = (choices[choice] != Ci::default()).then_some(choices[choice]);

    let keep = !spec.fields.is_empty() && {
        eprintln!("Fields from the {} preset:", spec.source);
        for line in field_lines(&spec.fields) {
            eprintln!("  {line}");
        }
        Confirm::with_theme(theme).with_prompt("Keep these fields?").default(true).interact()?
    };
    if !keep {
        spec.fields.clear();
    }
    while Confirm::with_theme(theme)
        .with_prompt(if spec.fields.is_empty() { "Add a spec field?" } else { "Add another spec field?" })
        .default(spec.fields.is_empty())
        .interact()?
    {
        let field = ask_field(theme, &spec)?;
        spec.fields.push(field);
    }

    let problems = spec::validate(&spec);
    if !problems.is_empty() {
        return Err(CliError::Input(spec::LoadError { origin: "your answers".into(), problems }));
    }
    let names = Names::derive(&spec);
    eprintln!("\nThe trigger:");
    for (label, value) in names.rows() {
        eprintln!("  {label:<12} {value}");
    }
    eprintln!("  {:<12} {}", "association", spec.association.field_name());
    eprintln!("  {:<12} {}", "ci", spec.ci.unwrap_or_default().as_str());
    eprintln!("  fields:");
    for line in field_lines(&spec.fields) {
        eprintln!("    {line}");
    }
    if spec.fields.is_empty() {
        eprintln!("    (none)");
    }
    if !Confirm::with_theme(theme).with_prompt("Write the repository?").default(true).interact()? {
        return Err(CliError::Cancelled);
    }
    Ok(spec)
}

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn field_lines(fields: &[Field]) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            let mut ty = f.ty.as_str().to_owned();
            if let Some(items) = f.items {
                ty = format!("list of {}", items.as_str());
            }
            if f.ty == FieldType::Enum {
                ty = format!("enum [{}]", f.values.join(", "));
            }
            let req = if f.required { ", required" } else { "" };
            let def = f.default.as_ref().map(|d| format!(", default {d}")).unwrap_or_default();
            format!("{} ({ty}{req}{def})", f.name)
        })
        .collect()
}

/// One text answer, validated as typed.
fn ask(
    theme: &dyn Theme,
    prompt: &str,
    default: Option<String>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, CliError> {
    let mut input = Input::<String>::with_theme(theme).with_prompt(prompt);
    if let Some(d) = default {
        input = input.default(d);
    }
    Ok(input.validate_with(|s: &String| check(s.trim())).interact_text()?.trim().to_owned())
}

/// An optional text answer: empty means "not set".
fn ask_optional(
    theme: &dyn Theme,
    prompt: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<String>, CliError> {
    let answer = Input::<String>::with_theme(theme)
        .with_prompt(format!("{prompt} (empty for none)"))
        .allow_empty(true)
        .validate_with(|s: &String| if s.trim().is_empty() { Ok(()) } else { check(s.trim()) })
        .interact_text()?;
    let answer = answer.trim();
    Ok((!answer.is_empty()).then(|| answer.to_owned()))
}

/// Problems the spec would have at `key` of a new last field, as one message.
fn field_problem(spec: &Spec, field: &Field, key: &str) -> Result<(), String> {
    let mut trial = spec.clone();
    trial.fields.push(field.clone());
    let at = format!("fields[{}].{key}", spec.fields.len());
    let messages: Vec<String> = spec::validate(&trial)
        .into_iter()
        .filter(|p| p.path == at || p.path.starts_with(&format!("{at}[")))
        .map(|p| p.message)
        .collect();
    if messages.is_empty() { Ok(()) } else { Err(messages.join("; ")) }
}

fn ask_field(theme: &dyn Theme, spec: &Spec) -> Result<Field, CliError> {
    let mut field = Field::new("", FieldType::String);
    field.name = ask(theme, "Field name (lowerCamelCase JSON name)", None, |s| {
        let mut f = field.clone();
        f.name = s.to_owned();
        field_problem(spec, &f, "name")
    })?;
    let types: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
    field.ty =
        FieldType::ALL[Select::with_theme(theme).with_prompt("Type").items(&types).default(0).interact()?];
    match field.ty {
        FieldType::List => {
            let items: Vec<&str> = ScalarType::ALL.iter().map(|t| t.as_str()).collect();
            field.items = Some(
                ScalarType::ALL[Select::with_theme(theme)
                    .with_prompt("Item type")
                    .items(&items)
                    .default(0)
                    .interact()?],
            );
        }
        FieldType::Enum => {
            let answer = ask(theme, "Values (comma-separated)", None, |s| {
                let mut f = field.clone();
                f.values = split_list(s);
                field_problem(spec, &f, "values")
            })?;
            field.values = split_list(&answer);
        }
        _ => {}
    }
    field.required = Confirm::with_theme(theme).with_prompt("Required?").default(false).interact()?;
    if !field.required && field.ty.takes_default() {
        let hint = match field.ty {
            FieldType::List => "Default (YAML/JSON list, e.g. [a, b])",
            FieldType::Map => "Default (YAML/JSON map, e.g. {a: b})",
            _ => "Default",
        };
        // Validation bounds come after the default here, so a default is
        // checked against the type now and against the bounds by the final check.
        field.default = ask_optional(theme, hint, |s| {
            let mut f = field.clone();
            f.default = Some(parse_value(&f, s));
            field_problem(spec, &f, "default")
        })?
        .map(|s| parse_value(&field, &s));
    }
    field.description = ask_optional(theme, "Description", |s| {
        let mut f = field.clone();
        f.description = Some(s.to_owned());
        field_problem(spec, &f, "description")
    })?;
    if field.ty.has_length() {
        field.pattern = ask_optional(theme, "Pattern (regular expression)", |s| {
            let mut f = field.clone();
            f.pattern = Some(s.to_owned());
            field_problem(spec, &f, "pattern").and_then(|()| field_problem(spec, &f, "default"))
        })?;
        for (key, label) in [("minLength", "Minimum length"), ("maxLength", "Maximum length")] {
            let value = ask_optional(theme, label, |s| {
                let n: u64 = s.parse().map_err(|_| format!("{s:?} is not a whole number"))?;
                let mut f = field.clone();
                set_length(&mut f, key, n);
                field_problem(spec, &f, key).and_then(|()| field_problem(spec, &f, "default"))
            })?;
            if let Some(n) = value.and_then(|v| v.parse().ok()) {
                set_length(&mut field, key, n);
            }
        }
    }
    if field.ty.has_range() {
        for (key, label) in [("minimum", "Minimum"), ("maximum", "Maximum")] {
            let value = ask_optional(theme, label, |s| {
                let n = parse_number(s)?;
                let mut f = field.clone();
                set_range(&mut f, key, n);
                field_problem(spec, &f, key).and_then(|()| field_problem(spec, &f, "default"))
            })?;
            if let Some(n) = value.and_then(|v| parse_number(&v).ok()) {
                set_range(&mut field, key, n);
            }
        }
    }
    Ok(field)
}

fn set_length(f: &mut Field, key: &str, n: u64) {
    if key == "minLength" { f.min_length = Some(n) } else { f.max_length = Some(n) }
}

/// A typed bound, exact when it is an integer (`9223372036854775807`).
fn parse_number(s: &str) -> Result<serde_json::Number, String> {
    match serde_json::from_str::<serde_json::Value>(s.trim()) {
        Ok(serde_json::Value::Number(n)) => Ok(n),
        _ => Err(format!("{s:?} is not a number")),
    }
}

fn set_range(f: &mut Field, key: &str, n: serde_json::Number) {
    if key == "minimum" { f.minimum = Some(n) } else { f.maximum = Some(n) }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
}

/// A default as typed: strings and enums as text, everything else as YAML.
fn parse_value(field: &Field, text: &str) -> serde_json::Value {
    match field.ty {
        FieldType::String | FieldType::Enum => serde_json::Value::String(text.to_owned()),
        _ => serde_saphyr::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
    }
}
