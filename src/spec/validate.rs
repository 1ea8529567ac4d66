//! Semantic validation of a parsed spec. Every problem is collected, none
//! stops the walk, so the user fixes everything in one round.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::{Association, FORMAT_VERSION, Field, FieldType, ScalarType, Spec, example, number, reserved};
use crate::names::{self, Names, RUST_KEYWORDS};

/// One thing wrong with a spec, at a key path such as `fields[2].default`.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    /// `line:column` in the spec file, when the spec came from a file.
    pub location: Option<(usize, usize)>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into(), location: None }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(top level)" } else { &self.path };
        match self.location {
            Some((line, col)) => write!(f, "{path} (line {line}, column {col}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Longest event-source name: it is part of every derived name.
const MAX_SOURCE_LEN: usize = 40;

/// Keys every custom resource already has; a spec field must not shadow them.
const ENVELOPE: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Validate a whole spec; an empty list means it can be rendered.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut p = Vec::new();
    let names = Names::derive(spec);
    validate_header(spec, &mut p);
    validate_names(spec, &names, &mut p);
    validate_fields(spec, &names, &mut p);
    if p.is_empty() {
        p.extend(crate::sources::problems(spec));
    }
    p
}

/// The format version, the source and the description.
fn validate_header(spec: &Spec, p: &mut Vec<Problem>) {
    if spec.format_version != FORMAT_VERSION {
        p.push(Problem::new(
            "formatVersion",
            format!("unsupported format version {}; this tool reads {FORMAT_VERSION}", spec.format_version),
        ));
    }
    if let Err(why) = check_dns_label(&spec.source) {
        p.push(Problem::new("source", why));
    } else if spec.source.len() > MAX_SOURCE_LEN {
        p.push(Problem::new(
            "source",
            format!("{:?} is longer than {MAX_SOURCE_LEN} characters; it becomes the kind, crate, binary and image names", spec.source),
        ));
    }
    if let Some(d) = &spec.description {
        check_description("description", d, p);
    }
}

/// The kind, plural, singular, short names, group, version, crate and
/// image, given or derived.
fn validate_names(spec: &Spec, names: &Names, p: &mut Vec<Problem>) {
    for (key, value, set) in [
        ("plural", &names.plural, spec.plural.is_some()),
        ("singular", &names.singular, spec.singular.is_some()),
    ] {
        if !set && check_dns_label(value).is_err() {
            p.push(Problem::new(
                key,
                format!(
                    "the derived {key} {value:?} is not a DNS-1123 label; set `{key}` or a shorter `kind`"
                ),
            ));
        }
    }
    if names.crd_name.len() > 253 {
        p.push(Problem::new(
            "group",
            format!("the CRD name {:?} is longer than 253 characters", names.crd_name),
        ));
    }
    if let Some(kind) = &spec.kind
        && let Err(why) = check_kind(kind)
    {
        p.push(Problem::new("kind", why));
    } else if spec.kind.is_none() && check_kind(&names.kind).is_err() {
        p.push(Problem::new(
            "kind",
            format!("cannot derive a kind from source {:?}; set `kind`", spec.source),
        ));
    }
    for (key, value) in [("plural", &spec.plural), ("singular", &spec.singular)] {
        if let Some(v) = value
            && let Err(why) = check_dns_label(v)
        {
            p.push(Problem::new(key, why));
        }
    }
    let mut seen_short = BTreeSet::new();
    for (i, s) in spec.short_names.iter().enumerate() {
        if let Err(why) = check_dns_label(s) {
            p.push(Problem::new(format!("shortNames[{i}]"), why));
        } else if !seen_short.insert(s) {
            p.push(Problem::new(format!("shortNames[{i}]"), format!("duplicate short name {s:?}")));
        }
    }
    if let Some(g) = &spec.group
        && let Err(why) = check_group(g)
    {
        p.push(Problem::new("group", why));
    }
    if let Some(v) = &spec.version
        && let Err(why) = check_version(v)
    {
        p.push(Problem::new("version", why));
    }
    if let Some(c) = &spec.crate_name
        && let Err(why) = check_crate_name(c)
    {
        p.push(Problem::new("crate", why));
    }
    if let Some(i) = &spec.image
        && let Err(why) = check_image(i)
    {
        p.push(Problem::new("image", why));
    }
}

/// Each field, then what fields must not share: JSON and Rust names.
fn validate_fields(spec: &Spec, names: &Names, p: &mut Vec<Problem>) {
    let mut json_names = BTreeSet::new();
    let mut rust_names = BTreeSet::new();
    for (i, field) in spec.fields.iter().enumerate() {
        let at = format!("fields[{i}]");
        validate_field(&at, field, spec.association, p);
        let duplicate_json = !json_names.insert(field.name.as_str());
        if duplicate_json {
            p.push(Problem::new(format!("{at}.name"), format!("duplicate field name {:?}", field.name)));
        }
        let rust = field.rust_name.clone().unwrap_or_else(|| names::rust_field_name(&field.name));
        if Association::ALL.iter().any(|a| a.rust_field() == rust) {
            p.push(Problem::new(
                format!("{at}.rustName"),
                format!("Rust name {rust:?} is the association field's; choose another `rustName`"),
            ));
        } else if rust == crate::crd::DELIVERY_FIELD && field.name != crate::crd::DELIVERY_FIELD {
            p.push(Problem::new(
                format!("{at}.rustName"),
                format!("Rust name {rust:?} is the delivery policy's; choose another `rustName`"),
            ));
        } else if field.ty == FieldType::Enum
            && let enum_type = names::enum_type_name(&names.kind, &field.name)
            && reserved::is_type_name(&enum_type)
        {
            p.push(Problem::new(
                format!("{at}.name"),
                format!(
                    "the enum type `{enum_type}` generated for this field clashes with a name the generated code uses; rename the field"
                ),
            ));
        } else if !rust_names.insert(rust.clone()) && !duplicate_json {
            p.push(Problem::new(
                format!("{at}.name"),
                format!("Rust name {rust:?} is already used by another field; set `rustName`"),
            ));
        }
    }
}

fn validate_field(at: &str, f: &Field, association: Association, p: &mut Vec<Problem>) {
    check_field_names(at, f, association, p);
    check_enum_values(at, f, p);
    check_type_keys(at, f, p);
    check_bounds(at, f, p);
    check_values(at, f, p);
}

/// The field's JSON and Rust names, and its description.
fn check_field_names(at: &str, f: &Field, association: Association, p: &mut Vec<Problem>) {
    match check_field_name(&f.name) {
        Err(why) => p.push(Problem::new(format!("{at}.name"), why)),
        Ok(()) => {
            if ENVELOPE.contains(&f.name.as_str()) {
                p.push(Problem::new(
                    format!("{at}.name"),
                    format!("{:?} collides with the resource envelope ({})", f.name, ENVELOPE.join(", ")),
                ));
            }
            if f.name == Association::Selector.field_name() || f.name == Association::Function.field_name() {
                let how = if f.name == association.field_name() {
                    format!("it is the association field of `association: {}`", association.as_str())
                } else {
                    "it is reserved for the function association".to_owned()
                };
                p.push(Problem::new(
                    format!("{at}.name"),
                    format!("{:?} collides with the association: {how}", f.name),
                ));
            }
            if f.name == crate::crd::DELIVERY_FIELD {
                p.push(Problem::new(
                    format!("{at}.name"),
                    format!(
                        "{:?} is the delivery policy every trigger has (retry, backoffPolicy, backoffDelay, deadLetter); choose another name",
                        f.name
                    ),
                ));
            }
        }
    }
    match &f.rust_name {
        Some(r) => {
            if let Err(why) = check_rust_ident(r) {
                p.push(Problem::new(format!("{at}.rustName"), why));
            }
        }
        None => {
            let derived = names::rust_field_name(&f.name);
            if RUST_KEYWORDS.contains(&derived.as_str()) {
                p.push(Problem::new(
                    format!("{at}.name"),
                    format!("{derived:?} is a Rust keyword; add `rustName` (for example `{derived}_value`)"),
                ));
            }
        }
    }
    if let Some(d) = &f.description {
        check_description(&format!("{at}.description"), d, p);
    }
}

/// An enum's values: at least one, distinct, each a usable Rust variant.
fn check_enum_values(at: &str, f: &Field, p: &mut Vec<Problem>) {
    if f.ty == FieldType::Enum {
        if f.values.is_empty() {
            p.push(Problem::new(format!("{at}.values"), "an enum needs at least one value"));
        }
        let mut seen = BTreeSet::new();
        let mut variants = BTreeSet::new();
        for (j, v) in f.values.iter().enumerate() {
            let variant = names::variant_name(v);
            if !seen.insert(v) {
                p.push(Problem::new(format!("{at}.values[{j}]"), format!("duplicate value {v:?}")));
            } else if !v.starts_with(|c: char| c.is_ascii_alphabetic())
                || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || RUST_KEYWORDS.contains(&variant.as_str())
            {
                p.push(Problem::new(
                    format!("{at}.values[{j}]"),
                    format!(
                        "{v:?} must start with a letter and contain only letters, digits, `-`, `_` or `.`"
                    ),
                ));
            } else if !variants.insert(variant.clone()) {
                p.push(Problem::new(
                    format!("{at}.values[{j}]"),
                    format!("{v:?} maps to the same Rust variant `{variant}` as an earlier value"),
                ));
            }
        }
    } else if !f.values.is_empty() {
        p.push(Problem::new(format!("{at}.values"), "`values` only applies to `type: enum`"));
    }
}

/// Keys that only fit some types.
fn check_type_keys(at: &str, f: &Field, p: &mut Vec<Problem>) {
    match (f.ty, f.items) {
        (FieldType::List, None) => p.push(Problem::new(
            format!("{at}.items"),
            "a list needs `items`: one of string, integer, number, boolean",
        )),
        (FieldType::List, Some(_)) | (_, None) => {}
        (_, Some(_)) => p.push(Problem::new(format!("{at}.items"), "`items` only applies to `type: list`")),
    }
    if !f.ty.has_length() {
        for (key, set) in [
            ("pattern", f.pattern.is_some()),
            ("minLength", f.min_length.is_some()),
            ("maxLength", f.max_length.is_some()),
        ] {
            if set {
                p.push(Problem::new(
                    format!("{at}.{key}"),
                    format!("`{key}` only applies to `type: string`"),
                ));
            }
        }
    }
    if !f.ty.has_range() {
        for (key, set) in [("minimum", f.minimum.is_some()), ("maximum", f.maximum.is_some())] {
            if set {
                p.push(Problem::new(
                    format!("{at}.{key}"),
                    format!("`{key}` only applies to `type: integer` and `type: number`"),
                ));
            }
        }
    }
}

/// Bounds against each other, and an integer's bounds within i64.
fn check_bounds(at: &str, f: &Field, p: &mut Vec<Problem>) {
    if let (Some(lo), Some(hi)) = (f.min_length, f.max_length)
        && lo > hi
    {
        p.push(Problem::new(
            format!("{at}.minLength"),
            format!("minLength {lo} is greater than maxLength {hi}"),
        ));
    }
    if let (Some(lo), Some(hi)) = (&f.minimum, &f.maximum)
        && number::compare(lo, hi) == Ordering::Greater
    {
        p.push(Problem::new(format!("{at}.minimum"), format!("minimum {lo} is greater than maximum {hi}")));
    }
    if f.ty == FieldType::Integer {
        for (key, v) in [("minimum", &f.minimum), ("maximum", &f.maximum)] {
            if let Some(v) = v
                && number::as_integer(v).is_none()
            {
                let why = if v.is_f64() && v.as_f64().is_some_and(|x| x.fract() != 0.0) {
                    format!("{v} is not a whole number; an integer field's bounds are integers")
                } else {
                    format!("{v} is outside what an integer field holds (i64: {} to {})", i64::MIN, i64::MAX)
                };
                p.push(Problem::new(format!("{at}.{key}"), why));
            }
        }
    }
}

/// The pattern, the example and the default, each against the field.
fn check_values(at: &str, f: &Field, p: &mut Vec<Problem>) {
    if let Some(pat) = &f.pattern {
        check_bidi(&format!("{at}.pattern"), pat, p);
    }
    if let Some(default) = &f.default {
        check_bidi_value(&format!("{at}.default"), default, p);
    }
    let pattern = f.pattern.as_deref().and_then(|pat| match check_pattern(pat) {
        Ok(re) => Some(re),
        Err(why) => {
            p.push(Problem::new(format!("{at}.pattern"), why));
            None
        }
    });

    match &f.example {
        Some(v) => {
            let path = format!("{at}.example");
            check_bidi_value(&path, v, p);
            if let Err(why) = check_example(f, v, pattern.as_ref()) {
                p.push(Problem::new(path, why));
            }
        }
        None => {
            if f.required
                && f.ty == FieldType::String
                && (f.pattern.is_none() || pattern.is_some())
                && example::value_for(f, pattern.as_ref()).is_none()
            {
                p.push(Problem::new(
                    format!("{at}.example"),
                    format!(
                        "needed: the field is required and no placeholder fits its validation{}; add `example:` with a value that does, for the example trigger",
                        f.pattern.as_ref().map(|pat| format!(" (pattern {pat:?})")).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if let Some(default) = &f.default {
        let path = format!("{at}.default");
        if f.required {
            p.push(Problem::new(
                &path,
                "a required field cannot have a default; drop `required` or `default`",
            ));
        } else if !f.ty.takes_default() {
            p.push(Problem::new(&path, format!("a `{}` field cannot have a default", f.ty.as_str())));
        } else if let Err(why) = check_default(f, default, pattern.as_ref()) {
            p.push(Problem::new(&path, why));
        }
    }
}

/// An `example:` fits the field like a default does; object and secret
/// reference fields, which take no default, take an object of their shape.
fn check_example(f: &Field, v: &Value, pattern: Option<&regex::Regex>) -> Result<(), String> {
    match f.ty {
        FieldType::Object => match v {
            Value::Object(_) => Ok(()),
            _ => Err(format!("expected a map, found {}", kind_of(v))),
        },
        FieldType::SecretKeyRef => {
            let ok = v.as_object().is_some_and(|m| {
                m.len() == 2 && ["name", "key"].iter().all(|k| m.get(*k).is_some_and(Value::is_string))
            });
            if ok {
                Ok(())
            } else {
                Err("expected a map with string `name` and `key`, like {name: my-secret, key: token}".into())
            }
        }
        _ => check_default(f, v, pattern),
    }
}

fn check_default(f: &Field, v: &Value, pattern: Option<&regex::Regex>) -> Result<(), String> {
    match f.ty {
        FieldType::String => {
            let s = v.as_str().ok_or_else(|| format!("expected a string, found {}", kind_of(v)))?;
            let len = s.chars().count() as u64;
            if f.min_length.is_some_and(|m| len < m) || f.max_length.is_some_and(|m| len > m) {
                return Err(format!("{s:?} violates the field's length limits"));
            }
            if let Some(re) = pattern
                && !re.is_match(s)
            {
                return Err(format!("{s:?} does not match pattern {:?}", re.as_str()));
            }
            Ok(())
        }
        FieldType::Integer | FieldType::Number => {
            let scalar = if f.ty == FieldType::Integer { ScalarType::Integer } else { ScalarType::Number };
            check_scalar(scalar, v)?;
            check_range(f, v)
        }
        FieldType::Boolean => check_scalar(ScalarType::Boolean, v),
        FieldType::Enum => match v.as_str() {
            Some(s) if f.values.iter().any(|x| x == s) => Ok(()),
            _ => Err(format!("expected one of {:?}, found {v}", f.values)),
        },
        FieldType::List => {
            let items = v.as_array().ok_or_else(|| format!("expected a list, found {}", kind_of(v)))?;
            let scalar = f.items.unwrap_or(ScalarType::String);
            for (i, item) in items.iter().enumerate() {
                check_scalar(scalar, item).map_err(|e| format!("item {i}: {e}"))?;
            }
            Ok(())
        }
        FieldType::Map => {
            let map =
                v.as_object().ok_or_else(|| format!("expected a map of strings, found {}", kind_of(v)))?;
            match map.iter().find(|(_, v)| !v.is_string()) {
                Some((k, v)) => Err(format!("value of {k:?} must be a string, found {}", kind_of(v))),
                None => Ok(()),
            }
        }
        FieldType::Object | FieldType::SecretKeyRef => Err("no default allowed".into()),
    }
}

/// A number within the field's `minimum` and `maximum`, compared exactly.
fn check_range(f: &Field, v: &Value) -> Result<(), String> {
    let Value::Number(n) = v else { return Ok(()) };
    if let Some(min) = &f.minimum
        && number::compare(n, min) == Ordering::Less
    {
        return Err(format!("{n} is below the field's minimum {min}"));
    }
    if let Some(max) = &f.maximum
        && number::compare(n, max) == Ordering::Greater
    {
        return Err(format!("{n} is above the field's maximum {max}"));
    }
    Ok(())
}

fn check_scalar(t: ScalarType, v: &Value) -> Result<(), String> {
    if let (ScalarType::Integer, Value::Number(n)) = (t, v)
        && n.as_i64().is_none()
        && (n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0))
    {
        return Err(format!(
            "{n} is outside what an integer field holds (i64: {} to {})",
            i64::MIN,
            i64::MAX
        ));
    }
    let ok = match t {
        ScalarType::String => v.is_string(),
        ScalarType::Integer => v.is_i64() || v.is_u64() && v.as_u64().is_some_and(|u| u <= i64::MAX as u64),
        ScalarType::Number => v.is_number(),
        ScalarType::Boolean => v.is_boolean(),
    };
    if ok { Ok(()) } else { Err(format!("expected {}, found {}", t.as_str(), kind_of(v))) }
}

/// What a JSON value is, for messages (`a string`, `a list`).
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A DNS-1123 label: what Kubernetes allows for resource names.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS-1123 label: use 1-63 lowercase letters, digits and `-`, starting with a letter and not ending with `-`"
        ))
    }
}

/// A kind: UpperCamelCase, and neither it nor its `Spec` and `Status`
/// types a name the generated code or Rust already gives a meaning.
pub fn check_kind(s: &str) -> Result<(), String> {
    let clash = [s.to_owned(), format!("{s}Spec"), format!("{s}Status")]
        .into_iter()
        .chain([s.strip_suffix("Spec"), s.strip_suffix("Status")].into_iter().flatten().map(str::to_owned))
        .find(|name| reserved::is_type_name(name) || RUST_KEYWORDS.contains(&name.as_str()));
    if let Some(name) = clash {
        return Err(format!(
            "{s:?} clashes with `{name}`, a name the generated code or Rust already uses; choose another kind, like `{s}Trigger`"
        ));
    }
    let ok = s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid kind: use UpperCamelCase ASCII letters and digits, like `NATSTrigger`"
        ))
    }
}

pub fn check_group(s: &str) -> Result<(), String> {
    let ok = s.len() <= 253
        && s.contains('.')
        && s.split('.')
            .all(|l| check_dns_label(l).is_ok() || l.bytes().all(|b| b.is_ascii_digit()) && !l.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an API group: use a DNS subdomain with a dot, like `kubeless.io`"))
    }
}

pub fn check_version(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix('v').unwrap_or("");
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    let tail_ok = tail.is_empty()
        || ["alpha", "beta"].iter().any(|w| {
            tail.strip_prefix(w).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if digits > 0 && !rest.starts_with('0') && tail_ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a Kubernetes API version: use v1, v2beta1, v1alpha2 and the like"))
    }
}

pub fn check_crate_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !RUST_KEYWORDS.contains(&s.replace('-', "_").as_str());
    if !ok {
        return Err(format!(
            "{s:?} is not a usable crate name: use lowercase letters, digits, `-` and `_`, starting with a letter, and not a Rust keyword"
        ));
    }
    if reserved::is_crate_name(s) {
        return Err(format!(
            "{s:?} is the name of a crate the generated repository uses (a dependency such as `kube` or `tokio`, or a sysroot crate such as `std` or `test`); choose another, like `{s}-trigger`"
        ));
    }
    Ok(())
}

pub fn check_image(s: &str) -> Result<(), String> {
    let (path, tag) = match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (s, None),
    };
    let path_ok = !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b))
        });
    if tag.is_some() {
        return Err(format!("{s:?} has a tag; give the repository only (the Makefile and CI choose tags)"));
    }
    if path_ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an image repository like `kubeless/nats-trigger-controller`"))
    }
}

pub fn check_field_name(s: &str) -> Result<(), String> {
    let ok = s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a lowerCamelCase JSON name: use ASCII letters and digits, starting with a lowercase letter"
        ))
    }
}

pub fn check_rust_ident(s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s != "_"
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!("{s:?} is not a snake_case Rust identifier"));
    }
    if RUST_KEYWORDS.contains(&s) {
        return Err(format!("{s:?} is a Rust keyword"));
    }
    Ok(())
}

fn check_pattern(pat: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pat).map_err(|e| {
        // The regex error shows the pattern indented by 4 with a caret line
        // under it: the caret's column is the position.
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .find(|l| !l.trim().is_empty() && l.trim().chars().all(|c| c == '^'))
            .and_then(|l| l.find('^'))
            .map(|col| format!(" (at character {})", col.saturating_sub(4) + 1))
            .unwrap_or_default();
        let why = lines.last().unwrap_or(&"").trim_start_matches("error: ");
        format!("not a valid regular expression: {why}{at}")
    })
}

/// Unicode's explicit bidirectional embeddings, overrides and isolates: they
/// make text display in another order than it is read ("Trojan Source"),
/// and rustc refuses them in comments and literals (deny-by-default lints
/// `text_direction_codepoint_in_comment` and `..._in_literal`).
const BIDI_CONTROLS: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];

/// Refuse bidirectional controls in any text of the spec that reaches the
/// generated files: descriptions become doc comments, which cannot escape them.
fn check_bidi(at: &str, text: &str, p: &mut Vec<Problem>) {
    if let Some(c) = text.chars().find(|c| BIDI_CONTROLS.contains(c)) {
        p.push(Problem::new(
            at,
            format!(
                "contains the bidirectional-control character U+{:04X}, which makes text display in another order than it reads (rustc refuses it in source); leave it out, or in a pattern write `\\x{{{:X}}}`",
                c as u32, c as u32
            ),
        ));
    }
}

/// [`check_bidi`] over every string in a JSON value (a default or an example).
fn check_bidi_value(at: &str, v: &Value, p: &mut Vec<Problem>) {
    match v {
        Value::String(s) => check_bidi(at, s, p),
        Value::Array(items) => items.iter().for_each(|i| check_bidi_value(at, i, p)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            check_bidi(at, k, p);
            check_bidi_value(at, v, p);
        }),
        _ => {}
    }
}

fn check_description(at: &str, d: &str, p: &mut Vec<Problem>) {
    check_bidi(at, d, p);
    if d.trim().is_empty() {
        p.push(Problem::new(at, "a description must not be empty; leave the key out instead"));
    }
    if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        p.push(Problem::new(at, "a description must not contain control characters other than newlines"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_regex_error_says_where() {
        let why = super::check_pattern("ab(c").unwrap_err();
        assert_eq!(why, "not a valid regular expression: unclosed group (at character 3)");
    }

    use super::*;
    use serde_json::json;

    fn paths(spec: &Spec) -> Vec<String> {
        validate(spec).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn an_empty_spec_is_valid() {
        assert!(validate(&Spec::empty("sqs")).is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut spec = Spec::empty("Bad_Source");
        spec.group = Some("nodot".into());
        spec.version = Some("1beta".into());
        let mut enum_field = Field::new("mode", FieldType::Enum);
        enum_field.default = Some(json!("x"));
        let mut typed = Field::new("type", FieldType::String);
        typed.minimum = Some(1.into());
        let mut dup = Field::new("count", FieldType::Integer);
        dup.default = Some(json!("ten"));
        spec.fields = vec![
            enum_field,
            typed,
            dup.clone(),
            dup,
            Field::new("metadata", FieldType::Map),
            Field::new("functionSelector", FieldType::String),
        ];
        let got = paths(&spec);
        for want in [
            "source",
            "group",
            "version",
            "fields[0].values",
            "fields[0].default",
            "fields[1].name",
            "fields[1].minimum",
            "fields[2].default",
            "fields[3].name",
            "fields[4].name",
            "fields[5].name",
        ] {
            assert!(got.contains(&want.to_string()), "missing {want} in {got:?}");
        }
    }

    #[test]
    fn defaults_must_fit_their_type() {
        let cases = [
            (FieldType::String, json!(1)),
            (FieldType::Integer, json!(1.5)),
            (FieldType::Number, json!("1")),
            (FieldType::Boolean, json!("true")),
            (FieldType::Map, json!({"a": 1})),
            (FieldType::Object, json!({})),
        ];
        for (ty, default) in cases {
            let mut spec = Spec::empty("x");
            let mut f = Field::new("value", ty);
            f.default = Some(default.clone());
            spec.fields.push(f);
            assert_eq!(paths(&spec), ["fields[0].default"], "{ty:?} with {default}");
        }
        let mut spec = Spec::empty("x");
        let mut f = Field::new("tags", FieldType::List);
        f.items = Some(ScalarType::Integer);
        f.default = Some(json!([1, "2"]));
        spec.fields.push(f);
        assert_eq!(paths(&spec), ["fields[0].default"]);
    }

    #[test]
    fn a_rust_keyword_is_fine_with_a_rename() {
        let mut spec = Spec::empty("x");
        let mut f = Field::new("match", FieldType::String);
        f.rust_name = Some("match_rule".into());
        spec.fields.push(f);
        assert!(validate(&spec).is_empty());
    }

    #[test]
    fn versions_and_groups() {
        for ok in ["v1", "v1beta1", "v2alpha3", "v10"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["1", "v", "v0", "v1beta", "v1gamma1", "V1"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert!(check_group("kubeless.io").is_ok());
        assert!(check_group("kubeless").is_err());
        assert!(check_image("kubeless/nats-trigger-controller").is_ok());
        assert!(check_image("ghcr.io/acme/x").is_ok());
        assert!(check_image("kubeless/x:latest").is_err());
        assert!(check_image("Kubeless/X").is_err());
    }
}
