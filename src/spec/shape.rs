//! Shape check of a spec document against the spec's JSON Schema (the one
//! `kubeless-trigger schema` prints), reporting every problem with its path.
//!
//! It understands exactly the keywords schemars emits for [`Spec`]: `$ref`,
//! `type`, `properties`, `additionalProperties`, `required`, `items`, `enum`,
//! `const`, `oneOf`, `anyOf`, `minimum`. A general validator (the `jsonschema`
//! crate, used by the tests to cross-check this one) costs ~25 ms to start,
//! which alone would make `check` many times slower than `diff -r`.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::{Association, Ci, FieldType, Problem, ScalarType, Spec, validate};

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(Spec::json_schema)
}

/// Every shape problem of `value`.
pub fn problems(value: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(value, schema(), "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Follow `{"$ref": "#/$defs/Name"}`.
fn resolve(node: &Value) -> &Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &schema()["$defs"][name],
        None => node,
    }
}

fn is_valid(value: &Value, node: &Value) -> bool {
    let mut out = Vec::new();
    walk(value, node, "", &mut out);
    out.is_empty()
}

fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn walk(value: &Value, node: &Value, path: &str, out: &mut Vec<Problem>) {
    let node = resolve(node);
    if let Some(types) = node.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
            let want: Vec<&str> = allowed.iter().filter(|t| **t != "null").copied().collect();
            out.push(Problem::new(
                path,
                format!("expected {}, found {}", want.join(" or "), validate::kind_of(value)),
            ));
            return;
        }
    }
    let one_of = node.get("oneOf").and_then(Value::as_array);
    let any_of = node.get("anyOf").and_then(Value::as_array);
    let enumerated = node.get("enum").and_then(Value::as_array);
    let fails_choice = one_of.is_some_and(|subs| subs.iter().filter(|s| is_valid(value, s)).count() != 1)
        || any_of.is_some_and(|subs| !subs.iter().any(|s| is_valid(value, s)))
        || enumerated.is_some_and(|vals| !vals.contains(value))
        || node.get("const").is_some_and(|c| c != value);
    if fails_choice {
        let message = match allowed_values(path) {
            Some(allowed) => format!("{value} is not one of: {}", allowed.join(", ")),
            None => format!("{value} is not allowed here"),
        };
        out.push(Problem::new(path, message));
        return;
    }
    if let Some(min) = node.get("minimum").and_then(Value::as_f64)
        && value.as_f64().is_some_and(|v| v < min)
    {
        out.push(Problem::new(path, format!("must be at least {min}")));
    }
    if let Value::Object(map) = value {
        object(map, node, path, out);
    }
    if let (Value::Array(items), Some(item_schema)) = (value, node.get("items")) {
        for (i, item) in items.iter().enumerate() {
            walk(item, item_schema, &format!("{path}[{i}]"), out);
        }
    }
}

fn object(map: &Map<String, Value>, node: &Value, path: &str, out: &mut Vec<Problem>) {
    let empty = Map::new();
    let properties = node.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    for required in
        node.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
    {
        if !map.contains_key(required) {
            out.push(Problem::new(path, format!("missing required key `{required}`")));
        }
    }
    let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, child) in map {
        match properties.get(key) {
            Some(child_schema) => walk(child, child_schema, &join(path, key), out),
            None if closed => {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                out.push(Problem::new(
                    join(path, key),
                    format!("unknown key {key:?}; valid keys here: {}", known.join(", ")),
                ));
            }
            None => {}
        }
    }
}

/// Remove the keys the schema does not know (typos), so the rest of a
/// document can still be read and checked for meaning.
pub fn without_unknown_keys(value: &Value) -> Value {
    let mut value = value.clone();
    prune(&mut value, schema());
    value
}

fn prune(value: &mut Value, node: &Value) {
    let node = resolve(node);
    match value {
        Value::Object(map) => {
            let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
            if node.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.retain(|key, _| properties.contains_key(key));
            }
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = properties.get(key) {
                    prune(child, child_schema);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node.get("items") {
                for item in items {
                    prune(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// The values a keyword-valued key accepts, for a readable message.
fn allowed_values(path: &str) -> Option<Vec<&'static str>> {
    let key = path.rsplit(['.', '[']).next()?;
    Some(match key {
        "type" => FieldType::ALL.iter().map(|t| t.as_str()).collect(),
        "items" => ScalarType::ALL.iter().map(|t| t.as_str()).collect(),
        "association" => Association::ALL.iter().map(|a| a.as_str()).collect(),
        "ci" => Ci::ALL.iter().map(|c| c.as_str()).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        problems(&v).into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    }

    #[test]
    fn a_minimal_spec_has_the_right_shape() {
        assert!(paths(json!({"formatVersion": 1, "source": "x", "association": "selector"})).is_empty());
    }

    #[test]
    fn every_shape_problem_is_reported_with_its_path() {
        let got = paths(json!({
            "formatVersion": -1, "source": 3, "association": "many", "feilds": [],
            "fields": [{"name": "a", "type": "strng", "requird": true}, {"name": "b"}],
            "shortNames": "x"
        }));
        for want in [
            "formatVersion: must be at least 0",
            "source: expected string, found an integer",
            "association: \"many\" is not one of: selector, function",
            "feilds: unknown key",
            "fields[0].type: \"strng\" is not one of: string,",
            "fields[0].requird: unknown key",
            "fields[1]: missing required key `type`",
            "shortNames: expected array, found a string",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
        }
        assert_eq!(got.len(), 8, "{got:#?}");
    }
}
