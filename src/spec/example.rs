//! The value a field takes in the example trigger (`examples/trigger.yaml`,
//! the generated README, the generated unit tests' `TEST_SPEC_JSON`).
//!
//! The example must be a valid object of the CRD it ships with, so a value
//! is either the field's own `example:` (validated like a default) or one
//! made here to satisfy every validation of the field. When none can be
//! made (a `pattern` no placeholder matches), validation asks for an
//! `example:` instead of shipping an example the cluster would reject.

use heck::ToKebabCase;
use serde_json::{Value, json};

use super::{Field, FieldType, ScalarType, number};

/// The example value of `f`, or `None` when the field needs an `example:`.
/// `pattern` is the field's compiled pattern, when it has a valid one.
pub fn value_for(f: &Field, pattern: Option<&regex::Regex>) -> Option<Value> {
    if let Some(example) = &f.example {
        return Some(example.clone());
    }
    Some(match f.ty {
        FieldType::String => json!(string_for(f, pattern)?),
        FieldType::Integer => {
            let min = f.minimum.as_ref().and_then(number::as_integer);
            let max = f.maximum.as_ref().and_then(number::as_integer);
            json!(min.or(max.filter(|m| *m < 1)).unwrap_or(1))
        }
        FieldType::Number => {
            let below_one = f.maximum.as_ref().filter(|m| m.as_f64().is_some_and(|m| m < 1.0));
            match f.minimum.as_ref().or(below_one) {
                Some(bound) => Value::Number(bound.clone()),
                None => json!(1.0),
            }
        }
        FieldType::Boolean => json!(true),
        FieldType::Enum => json!(f.values.first()?),
        FieldType::List => match f.items.unwrap_or(ScalarType::String) {
            ScalarType::String => json!(["example"]),
            ScalarType::Integer => json!([1]),
            ScalarType::Number => json!([1.0]),
            ScalarType::Boolean => json!([true]),
        },
        FieldType::Map | FieldType::Object => json!({"example": "value"}),
        FieldType::SecretKeyRef => json!({"name": "example-secret", "key": "token"}),
    })
}

/// A placeholder string that fits the field's length limits and pattern.
fn string_for(f: &Field, pattern: Option<&regex::Regex>) -> Option<String> {
    let named = format!("example-{}", f.name.to_kebab_case());
    [named.as_str(), "example", "a", "1"]
        .into_iter()
        .map(|candidate| fit_length(candidate, f.min_length, f.max_length))
        .find(|s| fits(f, pattern, s))
}

/// `text` cut to `max` characters or padded with `x` to `min`.
fn fit_length(text: &str, min: Option<u64>, max: Option<u64>) -> String {
    let mut out: String = match max {
        Some(max) => text.chars().take(usize::try_from(max).unwrap_or(usize::MAX)).collect(),
        None => text.to_owned(),
    };
    // A spec asks for at most a few kilobytes of placeholder; a huge
    // `minLength` is better answered by an `example:`.
    let min = min.and_then(|m| usize::try_from(m).ok()).unwrap_or(0).min(4096);
    while out.chars().count() < min {
        out.push('x');
    }
    out
}

/// Whether `s` satisfies the field's string validations.
pub fn fits(f: &Field, pattern: Option<&regex::Regex>, s: &str) -> bool {
    let len = s.chars().count() as u64;
    f.min_length.is_none_or(|m| len >= m)
        && f.max_length.is_none_or(|m| len <= m)
        && pattern.is_none_or(|re| re.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_field(
        pattern: Option<&str>,
        min: Option<u64>,
        max: Option<u64>,
    ) -> (Field, Option<regex::Regex>) {
        let mut f = Field::new("topicName", FieldType::String);
        f.pattern = pattern.map(str::to_owned);
        f.min_length = min;
        f.max_length = max;
        (f, pattern.map(|p| regex::Regex::new(p).unwrap()))
    }

    #[test]
    fn placeholders_fit_lengths_and_patterns() {
        let (f, re) = string_field(None, None, None);
        assert_eq!(value_for(&f, re.as_ref()), Some(json!("example-topic-name")));
        let (f, re) = string_field(None, Some(30), Some(32));
        assert_eq!(value_for(&f, re.as_ref()), Some(json!("example-topic-namexxxxxxxxxxxx")));
        let (f, re) = string_field(None, None, Some(3));
        assert_eq!(value_for(&f, re.as_ref()), Some(json!("exa")));
        let (f, re) = string_field(Some("^[a-z]+$"), None, None);
        assert_eq!(value_for(&f, re.as_ref()), Some(json!("example")));
        let (f, re) = string_field(Some("^[0-9]+$"), None, None);
        assert_eq!(value_for(&f, re.as_ref()), Some(json!("1")));
        let (f, re) = string_field(Some("^@daily$"), None, None);
        assert_eq!(value_for(&f, re.as_ref()), None, "needs an example");
    }

    #[test]
    fn numbers_fit_their_bounds() {
        let mut f = Field::new("n", FieldType::Integer);
        f.maximum = Some((-5).into());
        assert_eq!(value_for(&f, None), Some(json!(-5)));
        f.minimum = Some(i64::MIN.into());
        assert_eq!(value_for(&f, None), Some(json!(i64::MIN)));
        let mut f = Field::new("r", FieldType::Number);
        f.minimum = Some(9_007_199_254_740_993_i64.into());
        assert_eq!(value_for(&f, None), Some(json!(9_007_199_254_740_993_i64)));
    }
}
