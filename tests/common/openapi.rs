//! A structural validator for the OpenAPI v3 subset the generated CRDs use
//! (`type`, `nullable`, `format: int64`, `pattern`, `minLength`,
//! `maxLength`, `minimum`, `maximum`, `enum`, `required`, `properties`,
//! `items`, `additionalProperties`, `x-kubernetes-preserve-unknown-fields`):
//! enough to prove an example object is one the API server accepts.
//! Written for the tests instead of converting the schema for `jsonschema`,
//! whose JSON Schema does not know `nullable` or the Kubernetes extensions.

use serde_json::Value;

/// Every violation of `schema` by `value`, each as `path: what`.
pub fn violations(value: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, schema, "", &mut out);
    out
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    let mut fail = |what: String| out.push(format!("{}: {what}", if path.is_empty() { "." } else { path }));
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            fail("null where the schema is not nullable".into());
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        None => true,
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some(other) => {
            fail(format!("unknown schema type {other:?}"));
            return;
        }
    };
    if !type_ok {
        fail(format!("expected {}, found {value}", ty.unwrap_or_default()));
        return;
    }
    if schema.get("format").and_then(Value::as_str) == Some("int64") && value.as_i64().is_none() {
        fail(format!("{value} is not an int64"));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        fail(format!("{value} is not one of {values:?}"));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema.get("minLength").and_then(Value::as_u64).is_some_and(|m| len < m) {
            fail(format!("{s:?} is shorter than minLength"));
        }
        if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|m| len > m) {
            fail(format!("{s:?} is longer than maxLength"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => fail(format!("{s:?} does not match {pattern:?}")),
                Err(e) => fail(format!("pattern {pattern:?} does not compile: {e}")),
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if schema.get("minimum").and_then(Value::as_f64).is_some_and(|m| n < m) {
            fail(format!("{value} is below minimum"));
        }
        if schema.get("maximum").and_then(Value::as_f64).is_some_and(|m| n > m) {
            fail(format!("{value} is above maximum"));
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            walk(item, item_schema, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(map) = value.as_object() {
        object(map, schema, path, out);
    }
}

fn object(map: &serde_json::Map<String, Value>, schema: &Value, path: &str, out: &mut Vec<String>) {
    for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = key.as_str()
            && !map.contains_key(key)
        {
            out.push(format!("{path}: missing required {key:?}"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, child) in map {
        let at = format!("{path}.{key}");
        match (properties.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
            (Some(child_schema), _) => walk(child, child_schema, &at, out),
            (None, Some(Value::Bool(false))) => out.push(format!("{at}: not allowed")),
            (None, Some(extra @ Value::Object(_))) => walk(child, extra, &at, out),
            // A structural schema prunes unknown fields; the example must not rely on that.
            (None, _) if properties.is_some() && !preserve => out.push(format!("{at}: unknown field")),
            (None, _) => {}
        }
    }
}

/// The `spec` schema of a CRD's first (and only) version.
pub fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}
