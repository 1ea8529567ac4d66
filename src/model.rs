//! The render model: the spec's fields turned into the Rust and schema pieces
//! templates place. All decisions about types, attributes and defaults live
//! here, so templates only place their results (they loop and test flags,
//! never derive), and the CRD builder and the Rust types share the facts.

use heck::{ToLowerCamelCase, ToSnakeCase, ToUpperCamelCase};
use serde::Serialize;
use serde_json::{Value, json};

use crate::names::{self, Names};
use crate::sources::{self, EnvVar, Examples, Readme, Rule};
use crate::spec::{Association, Ci, Field, FieldType, ScalarType, Spec, example, number};

/// Everything the templates see, by concern. The concerns are flattened
/// into one namespace for the templates (`fields`, `example_spec`, ...).
#[derive(Debug, Serialize)]
pub struct Model {
    pub names: Names,
    /// The custom resource's types: the types file and the CRD.
    #[serde(flatten)]
    pub types: TypesModel,
    /// The example trigger object, as the examples, README and tests use it.
    #[serde(flatten)]
    pub examples: ExamplesModel,
    pub ci: CiModel,
    /// What the source's built-in implementation adds (`sources/<name>/source.yaml`).
    pub source: SourceModel,
}

/// The custom resource's types, from which the Rust types and the CRD schema
/// are both made.
#[derive(Debug, Serialize)]
pub struct TypesModel {
    /// One line: what the trigger does (CRD description and docs).
    pub description: String,
    /// The description as a Rust string literal (the CRD's `doc`).
    pub description_literal: String,
    /// Description of the trigger's `spec`.
    pub spec_description: String,
    /// How a trigger names its functions, as every output spells it.
    pub association: AssociationModel,
    pub fields: Vec<FieldModel>,
    pub enums: Vec<EnumModel>,
    pub columns: Vec<Column>,
    /// Which optional imports the types file needs.
    pub uses: Uses,
}

/// The example trigger object, in the forms the generated files need.
#[derive(Debug, Serialize)]
pub struct ExamplesModel {
    /// An example trigger object's spec, one `key: value` line per entry
    /// (values in JSON, which is YAML), for `examples/`.
    pub example_spec: Vec<String>,
    /// The same example as a JSON object, as a Rust string literal for the
    /// generated tests (a raw string, one member per line, so rustfmt
    /// leaves it alone; with enough `#` for any example text).
    pub test_spec_json: String,
    /// A JSON merge patch that changes the example trigger's spec (a new
    /// generation) and keeps it valid, for the update end-to-end test.
    pub update_patch: String,
}

/// What the CI files need: which of them exist, and the cluster the
/// end-to-end job starts (the manifests are validated against its version).
#[derive(Debug, Serialize)]
pub struct CiModel {
    pub github: bool,
    pub travis: bool,
    /// The Kubernetes version of the end-to-end cluster, `v` and all.
    pub kubernetes_version: &'static str,
    pub minikube_version: &'static str,
    /// The registry of the controller image, which the push jobs log in to.
    pub registry: String,
}

/// Kubernetes of the end-to-end cluster: the newest minikube v1.36 starts.
pub const KUBERNETES_VERSION: &str = "v1.33.1";
const MINIKUBE_VERSION: &str = "v1.36.0";

impl CiModel {
    fn of(ci: Ci, image: &str) -> CiModel {
        CiModel {
            github: ci.github(),
            travis: ci.travis(),
            kubernetes_version: KUBERNETES_VERSION,
            minikube_version: MINIKUBE_VERSION,
            registry: registry(image).to_owned(),
        }
    }

    /// Whether the template at `path` (as in `templates/`) is rendered: the
    /// CI files only for the providers the spec asks for.
    pub fn renders(&self, path: &str) -> bool {
        if path.starts_with("dot-github/") {
            self.github
        } else if path.starts_with("dot-travis.yml") {
            self.travis
        } else {
            true
        }
    }
}

/// The registry host of an image reference, as Docker reads it: the first
/// path component when it looks like a host (a `.` or `:`, or `localhost`),
/// else Docker Hub.
fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The source-specific pieces: from the built-in implementation's
/// `source.yaml`, or empty (and the skeleton's examples) without one.
#[derive(Debug, Serialize)]
pub struct SourceModel {
    /// Whether the source is built in (else `src/event_source.rs` is a skeleton).
    pub built_in: bool,
    /// Whether it keeps objects instead of consuming a stream.
    pub objects: bool,
    pub dependencies: &'static [String],
    pub build_packages: &'static [String],
    pub env: &'static [EnvVar],
    /// Mount path of the controller's optional Secret, if the source reads files from it.
    pub secret_volume: Option<&'static str>,
    /// Extra RBAC rules, each list as a jsonnet array literal.
    pub rbac: Vec<RuleModel>,
    pub examples: Examples,
    /// The README's source paragraphs; the templates have the skeleton's.
    pub readme: Option<&'static Readme>,
}

/// An RBAC rule of a source, its lists written as jsonnet arrays (`['batch']`).
#[derive(Debug, Serialize)]
pub struct RuleModel {
    pub api_groups: String,
    pub resources: String,
    pub verbs: String,
}

impl RuleModel {
    fn of(rule: &Rule) -> RuleModel {
        let array = |items: &[String]| {
            let quoted: Vec<String> =
                items.iter().map(|i| format!("'{}'", i.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
            format!("[{}]", quoted.join(", "))
        };
        RuleModel {
            api_groups: array(&rule.api_groups),
            resources: array(&rule.resources),
            verbs: array(&rule.verbs),
        }
    }
}

impl SourceModel {
    fn of(spec: &Spec) -> SourceModel {
        match sources::built_in(spec) {
            Some((_, m)) => SourceModel {
                built_in: true,
                objects: m.kind == sources::Kind::Objects,
                dependencies: &m.dependencies,
                build_packages: &m.build_packages,
                env: &m.env,
                secret_volume: m.secret_volume.as_deref(),
                rbac: m.rbac.iter().map(RuleModel::of).collect(),
                examples: m.examples.clone(),
                readme: Some(&m.readme),
            },
            None => SourceModel {
                built_in: false,
                objects: false,
                dependencies: &[],
                build_packages: &[],
                env: &[],
                secret_volume: None,
                rbac: Vec::new(),
                examples: skeleton_examples(&spec.source),
                readme: None,
            },
        }
    }
}

/// Make recipe lines of `examples/Makefile` for a source without a
/// built-in implementation: nothing to deploy, and a publish recipe that
/// says what to write.
fn skeleton_examples(source: &str) -> Examples {
    Examples {
        source: vec!["@echo \"nothing to deploy for the event-source skeleton\"".to_owned()],
        verify: vec!["@true".to_owned()],
        publish_verify: Vec::new(),
        publish: vec![format!(
            "@echo \"examples/Makefile: write the publish recipe for {source}: send {{\\\"payload\\\": \\\"$(TOKEN)\\\"}} to the trigger's source\" >&2; exit 1"
        )],
    }
}

/// The association field: decided once here, placed by the templates and
/// the CRD builder.
#[derive(Debug, Serialize)]
pub struct AssociationModel {
    #[serde(skip)]
    pub kind: Association,
    /// `functionSelector` or `functionName`.
    pub field: &'static str,
    /// Its description (doc comment, schema, README).
    pub description: &'static str,
    /// Its type in the README's field table.
    pub table_type: &'static str,
    /// The field in Rust.
    pub rust: AssociationRust,
}

impl AssociationModel {
    fn of(association: Association) -> AssociationModel {
        let (description, table_type, rust) = match association {
            Association::Selector => (
                "Label selector of the functions, in the trigger's namespace, that receive every event.",
                "label selector",
                AssociationRust { field: association.rust_field(), ty: "LabelSelector", variant: "Selector" },
            ),
            Association::Function => (
                "Name of the function, in the trigger's namespace, that receives every event.",
                "`String`",
                AssociationRust { field: association.rust_field(), ty: "String", variant: "Name" },
            ),
        };
        AssociationModel { kind: association, field: association.field_name(), description, table_type, rust }
    }
}

/// How the association field is spelled in the generated Rust.
#[derive(Debug, Serialize)]
pub struct AssociationRust {
    /// `function_selector` or `function_name`.
    pub field: &'static str,
    /// `LabelSelector` or `String`.
    pub ty: &'static str,
    /// The `controller::FunctionRef` variant: `Selector` or `Name`.
    pub variant: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct Uses {
    pub btreemap: bool,
    pub secret_key_ref: bool,
    pub label_selector: bool,
}

/// One spec field as Rust code and as schema.
#[derive(Debug, Serialize)]
pub struct FieldModel {
    pub json_name: String,
    pub rust_name: String,
    pub rust_type: String,
    pub doc_lines: Vec<String>,
    /// The description on one line for a Markdown table cell: `|` escaped,
    /// so a description cannot add columns to the README's field table.
    pub table_description: String,
    /// Full attribute lines (`#[serde(...)]`, `#[schemars(...)]`), in order.
    pub attrs: Vec<String>,
    /// `default_<name>` function, when the field has a default.
    pub default_fn: Option<DefaultFn>,
    pub required: bool,
    /// The field's OpenAPI v3 schema, as kube derives it from the Rust type.
    #[serde(skip)]
    pub schema: Value,
}

#[derive(Debug, Serialize)]
pub struct DefaultFn {
    pub name: String,
    pub rust_type: String,
    pub expr: String,
}

/// A Rust enum generated for an `enum` field.
#[derive(Debug, Serialize)]
pub struct EnumModel {
    pub name: String,
    pub json_name: String,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Serialize)]
pub struct Variant {
    pub name: String,
    pub value: String,
}

/// An `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub json_path: String,
    /// The `printcolumn(...)` attribute argument, Rust-escaped.
    pub attr: String,
}

/// Printer columns every trigger has, whatever its fields.
const FIXED_COLUMNS: &[&str] = &["Function", "Ready", "Age"];

/// How many spec fields get their own printer column.
const FIELD_COLUMNS: usize = 2;

impl Model {
    /// Build the model of a validated spec.
    pub fn new(spec: &Spec) -> Model {
        let names = Names::derive(spec);
        Model {
            types: TypesModel::new(spec, &names),
            examples: ExamplesModel::new(spec),
            ci: CiModel::of(spec.ci.unwrap_or_default(), &names.image),
            source: SourceModel::of(spec),
            names,
        }
    }
}

impl TypesModel {
    fn new(spec: &Spec, names: &Names) -> TypesModel {
        let mut uses = Uses { label_selector: spec.association == Association::Selector, ..Uses::default() };
        let mut enums = Vec::new();
        let fields: Vec<FieldModel> =
            spec.fields.iter().map(|f| field_model(names, f, &mut uses, &mut enums)).collect();
        let description =
            spec.description.as_deref().map(normalize).unwrap_or_else(|| match spec.association {
                Association::Selector => format!(
                    "{} delivers {} events to the Kubeless functions selected by its `functionSelector`.",
                    names.kind, names.source_title
                ),
                Association::Function => format!(
                    "{} delivers {} events to the Kubeless function named by its `functionName`.",
                    names.kind, names.source_title
                ),
            });
        TypesModel {
            spec_description: format!(
                "Desired state of a {}: the event source settings and the functions to call.",
                names.kind
            ),
            association: AssociationModel::of(spec.association),
            columns: columns(spec, &fields),
            description_literal: format!("{description:?}"),
            description,
            fields,
            enums,
            uses,
        }
    }
}

impl ExamplesModel {
    fn new(spec: &Spec) -> ExamplesModel {
        let example = example_values(spec);
        let example_spec = example.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let members: Vec<String> = example.iter().map(|(k, v)| format!("        {k:?}: {v}")).collect();
        let test_spec_json = crate::rustlit::str_literal(&format!("{{\n{}\n    }}", members.join(",\n")));
        ExamplesModel {
            example_spec,
            test_spec_json,
            update_patch: match spec.association {
                Association::Selector => json!({"spec": {"functionSelector": {
                    "matchExpressions": [{"key": "function", "operator": "Exists"}]}}}),
                Association::Function => json!({"spec": {"functionName": "hello-renamed"}}),
            }
            .to_string(),
        }
    }
}

/// Trim every line and the whole text; the same text goes into doc comments
/// and the schema, so both must agree byte for byte.
fn normalize(text: &str) -> String {
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_owned()
}

/// Text as one Markdown table cell: on one line, `|` escaped.
fn table_cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

fn sentence_of(json_name: &str) -> String {
    let words = json_name.to_snake_case().replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => format!("{}{}.", c.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn field_model(names: &Names, f: &Field, uses: &mut Uses, enums: &mut Vec<EnumModel>) -> FieldModel {
    let rust_name = f.rust_name.clone().unwrap_or_else(|| names::rust_field_name(&f.name));
    let description = f.description.as_deref().map(normalize).unwrap_or_else(|| sentence_of(&f.name));
    let optional = !f.required && f.default.is_none();

    let enum_name = names::enum_type_name(&names.kind, &f.name);
    let base_type = base_rust_type(&names.kind, f);
    uses.btreemap |= f.ty == FieldType::Map;
    uses.secret_key_ref |= f.ty == FieldType::SecretKeyRef;
    if f.ty == FieldType::Enum {
        enums.push(EnumModel {
            name: enum_name,
            json_name: f.name.clone(),
            variants: f
                .values
                .iter()
                .map(|v| Variant { name: names::variant_name(v), value: v.clone() })
                .collect(),
        });
    }

    let mut attrs = Vec::new();
    let default_rust_name = rust_name.trim_start_matches("r#");
    let default_fn = f.default.as_ref().map(|d| DefaultFn {
        name: format!("default_{default_rust_name}"),
        rust_type: base_type.clone(),
        expr: default_expr(f, d, &base_type),
    });
    // The struct has `rename_all = "camelCase"`; rename only where that is not enough.
    let rename = (rust_name.to_lower_camel_case() != f.name).then(|| format!("rename = {:?}", f.name));
    let mut serde_args: Vec<String> = rename.into_iter().collect();
    if let Some(d) = &default_fn {
        serde_args.push(format!("default = {:?}", d.name));
    } else if optional {
        serde_args.push("default".into());
        serde_args.push("skip_serializing_if = \"Option::is_none\"".into());
    }
    if !serde_args.is_empty() {
        attrs.push(format!("#[serde({})]", serde_args.join(", ")));
    }
    let mut validation = Vec::new();
    if f.min_length.is_some() || f.max_length.is_some() {
        let parts: Vec<String> = [("min", f.min_length), ("max", f.max_length)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
            .collect();
        validation.push(format!("length({})", parts.join(", ")));
    }
    if let Some(p) = &f.pattern {
        validation.push(format!("regex(pattern = {})", crate::rustlit::str_literal(p)));
    }
    if f.minimum.is_some() || f.maximum.is_some() {
        let parts: Vec<String> = [("min", &f.minimum), ("max", &f.maximum)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}", number_literal(f.ty, v))))
            .collect();
        validation.push(format!("range({})", parts.join(", ")));
    }
    if f.ty == FieldType::Object {
        validation
            .push("extend(\"type\" = \"object\", \"x-kubernetes-preserve-unknown-fields\" = true)".into());
    }
    if !validation.is_empty() {
        attrs.push(format!("#[schemars({})]", validation.join(", ")));
    }

    let rust_type = rust_type(&names.kind, f);
    let schema = field_schema(f, &description, optional);
    FieldModel {
        json_name: f.name.clone(),
        rust_name,
        rust_type,
        doc_lines: description.lines().map(str::to_owned).collect(),
        table_description: table_cell(&description),
        attrs,
        default_fn,
        required: f.required,
        schema,
    }
}

/// The Rust type of a field of a trigger of `kind`, as the generated types declare it.
pub fn rust_type(kind: &str, f: &Field) -> String {
    let base = base_rust_type(kind, f);
    if !f.required && f.default.is_none() { format!("Option<{base}>") } else { base }
}

/// The Rust type of a field's value, before `Option` for an optional field.
fn base_rust_type(kind: &str, f: &Field) -> String {
    match f.ty {
        FieldType::String => "String".to_owned(),
        FieldType::Integer => "i64".to_owned(),
        FieldType::Number => "f64".to_owned(),
        FieldType::Boolean => "bool".to_owned(),
        FieldType::Enum => names::enum_type_name(kind, &f.name),
        FieldType::List => format!("Vec<{}>", scalar_rust(f.items.unwrap_or(ScalarType::String))),
        FieldType::Map => "BTreeMap<String, String>".to_owned(),
        FieldType::Object => "serde_json::Value".to_owned(),
        FieldType::SecretKeyRef => "SecretKeyRef".to_owned(),
    }
}

fn scalar_rust(s: ScalarType) -> &'static str {
    match s {
        ScalarType::String => "String",
        ScalarType::Integer => "i64",
        ScalarType::Number => "f64",
        ScalarType::Boolean => "bool",
    }
}

/// A Rust literal for a bound: integers exactly (validation proved they
/// fit an i64), numbers with a fraction.
fn number_literal(ty: FieldType, v: &serde_json::Number) -> String {
    match (ty, number::as_integer(v)) {
        // schemars infers `i32` for an unsuffixed literal.
        (FieldType::Integer, Some(i)) if i32::try_from(i).is_err() => format!("{i}_i64"),
        (FieldType::Integer, Some(i)) => format!("{i}"),
        _ => format!("{:?}", v.as_f64().unwrap_or_default()),
    }
}

fn scalar_expr(s: ScalarType, v: &Value) -> String {
    match s {
        ScalarType::String => format!("{:?}.to_owned()", v.as_str().unwrap_or_default()),
        ScalarType::Integer => v.as_i64().unwrap_or_default().to_string(),
        ScalarType::Number => format!("{:?}", v.as_f64().unwrap_or_default()),
        ScalarType::Boolean => v.as_bool().unwrap_or_default().to_string(),
    }
}

/// The body of `default_<field>()`.
fn default_expr(f: &Field, v: &Value, ty: &str) -> String {
    match f.ty {
        FieldType::String => scalar_expr(ScalarType::String, v),
        FieldType::Integer => scalar_expr(ScalarType::Integer, v),
        FieldType::Number => scalar_expr(ScalarType::Number, v),
        FieldType::Boolean => scalar_expr(ScalarType::Boolean, v),
        FieldType::Enum => format!("{ty}::{}", names::variant_name(v.as_str().unwrap_or_default())),
        FieldType::List => {
            let items = v.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                "Vec::new()".into()
            } else {
                let s = f.items.unwrap_or(ScalarType::String);
                format!("vec![{}]", items.iter().map(|i| scalar_expr(s, i)).collect::<Vec<_>>().join(", "))
            }
        }
        FieldType::Map => {
            let map = v.as_object().cloned().unwrap_or_default();
            if map.is_empty() {
                "BTreeMap::new()".into()
            } else {
                let mut pairs: Vec<_> = map.iter().collect();
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                let entries: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| {
                        format!("({k:?}.to_owned(), {:?}.to_owned())", v.as_str().unwrap_or_default())
                    })
                    .collect();
                format!("BTreeMap::from([{}])", entries.join(", "))
            }
        }
        FieldType::Object | FieldType::SecretKeyRef => "Default::default()".into(),
    }
}

/// The default as kube serializes it from the Rust value: numbers of a
/// `number` field become floats.
fn default_json(f: &Field, v: &Value) -> Value {
    let as_float = |v: &Value| v.as_f64().map(|x| json!(x)).unwrap_or(Value::Null);
    match (f.ty, f.items) {
        (FieldType::Number, _) => as_float(v),
        (FieldType::List, Some(ScalarType::Number)) => {
            Value::Array(v.as_array().map(|a| a.iter().map(as_float).collect()).unwrap_or_default())
        }
        _ => v.clone(),
    }
}

fn scalar_schema(s: ScalarType) -> Value {
    match s {
        ScalarType::String => json!({"type": "string"}),
        ScalarType::Integer => json!({"type": "integer", "format": "int64"}),
        ScalarType::Number => json!({"type": "number", "format": "double"}),
        ScalarType::Boolean => json!({"type": "boolean"}),
    }
}

/// The OpenAPI schema kube-derive emits for the generated Rust field.
/// Each generated repository's `crd` test proves the two agree.
fn field_schema(f: &Field, description: &str, optional: bool) -> Value {
    let mut s = match f.ty {
        FieldType::String => scalar_schema(ScalarType::String),
        FieldType::Integer => scalar_schema(ScalarType::Integer),
        FieldType::Number => scalar_schema(ScalarType::Number),
        FieldType::Boolean => scalar_schema(ScalarType::Boolean),
        FieldType::Enum => {
            let mut values: Vec<Value> = f.values.iter().map(|v| json!(v)).collect();
            if optional {
                values.push(Value::Null);
            }
            json!({"type": "string", "enum": values})
        }
        FieldType::List => {
            json!({"type": "array", "items": scalar_schema(f.items.unwrap_or(ScalarType::String))})
        }
        FieldType::Map => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        FieldType::Object => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        FieldType::SecretKeyRef => secret_key_ref_schema(),
    };
    let obj = s.as_object_mut().expect("schemas are objects");
    obj.insert("description".into(), json!(description));
    if optional && f.ty != FieldType::Object {
        obj.insert("nullable".into(), json!(true));
    }
    if let Some(d) = &f.default {
        obj.insert("default".into(), default_json(f, d));
    }
    if let Some(p) = &f.pattern {
        obj.insert("pattern".into(), json!(p));
    }
    if let Some(n) = f.min_length {
        obj.insert("minLength".into(), json!(n));
    }
    if let Some(n) = f.max_length {
        obj.insert("maxLength".into(), json!(n));
    }
    for (key, bound) in [("minimum", &f.minimum), ("maximum", &f.maximum)] {
        if let Some(n) = bound {
            obj.insert(key.into(), bound_json(f.ty, n));
        }
    }
    s
}

/// A bound as schemars writes it from the attribute [`number_literal`]
/// emits: the exact integer, or a double.
fn bound_json(ty: FieldType, n: &serde_json::Number) -> Value {
    match (ty, number::as_integer(n)) {
        (FieldType::Integer, Some(i)) => json!(i),
        _ => json!(n.as_f64().unwrap_or_default()),
    }
}

/// Schema of the generated `SecretKeyRef` struct (templates/src/apis/…/mod.rs).
pub fn secret_key_ref_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "key": {"type": "string", "description": crate::crd::DOCS.secret_key},
            "name": {"type": "string", "description": crate::crd::DOCS.secret_name}
        },
        "required": ["key", "name"]
    })
}

fn columns(spec: &Spec, fields: &[FieldModel]) -> Vec<Column> {
    let mut out = Vec::new();
    let mut push = |name: String, ty: &str, json_path: String| {
        let attr = format!("name = {name:?}, type_ = {ty:?}, json_path = {json_path:?}");
        out.push(Column { name, ty: ty.to_owned(), json_path, attr });
    };
    if spec.association == Association::Function {
        push("Function".into(), "string", ".spec.functionName".into());
    }
    let scalar = spec.fields.iter().zip(fields).filter(|(f, _)| {
        (f.required || f.default.is_some())
            && matches!(
                f.ty,
                FieldType::String
                    | FieldType::Integer
                    | FieldType::Number
                    | FieldType::Boolean
                    | FieldType::Enum
            )
    });
    for (f, _) in scalar.take(FIELD_COLUMNS) {
        let ty = match f.ty {
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            _ => "string",
        };
        // A field named like a fixed column (`ready`, `age`, `function`) gets
        // a `Spec` prefix: two columns of one name make `kubectl get` ambiguous.
        let mut name = f.name.to_upper_camel_case();
        if FIXED_COLUMNS.contains(&name.as_str()) {
            name = format!("Spec{name}");
        }
        push(name, ty, format!(".spec.{}", f.name));
    }
    push("Ready".into(), "string", ".status.conditions[?(@.type==\"Ready\")].status".into());
    push("Age".into(), "date", ".metadata.creationTimestamp".into());
    out
}

/// An example value for every required field, every field with an
/// `example:`, and the association (which selects or names the function
/// `hello`), as (key, JSON text). Validation proved each field has one.
fn example_values(spec: &Spec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in spec.fields.iter().filter(|f| f.required || f.example.is_some()) {
        let pattern = f.pattern.as_deref().and_then(|p| regex::Regex::new(p).ok());
        if let Some(value) = example::value_for(f, pattern.as_ref()) {
            out.push((f.name.clone(), value.to_string()));
        }
    }
    let association = match spec.association {
        Association::Selector => json!({"matchLabels": {"function": "hello"}}),
        Association::Function => json!("hello"),
    };
    out.push((spec.association.field_name().to_owned(), association.to_string()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_is_read_from_the_image_as_docker_reads_it() {
        for (image, host) in [
            ("kubeless/nats-trigger-controller", "docker.io"),
            ("nats-trigger-controller", "docker.io"),
            ("ghcr.io/acme/nats", "ghcr.io"),
            ("registry.example.com:5000/team/nats", "registry.example.com:5000"),
            ("localhost/nats", "localhost"),
            ("quay.io/a/b/c", "quay.io"),
        ] {
            assert_eq!(super::registry(image), host, "{image}");
        }
    }

    use super::*;

    /// A field from its spec-file YAML.
    fn field(yaml: &str) -> Field {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn each_declaration_has_its_rust_type() {
        let table = [
            ("{name: a, type: string, required: true}", "String"),
            ("{name: a, type: string}", "Option<String>"),
            ("{name: a, type: string, default: x}", "String"),
            ("{name: a, type: integer}", "Option<i64>"),
            ("{name: a, type: number, default: 1.5}", "f64"),
            ("{name: a, type: boolean, default: false}", "bool"),
            ("{name: a, type: enum, values: [x, y], required: true}", "NATSTriggerA"),
            ("{name: a, type: list, items: integer}", "Option<Vec<i64>>"),
            ("{name: a, type: list, default: []}", "Vec<String>"),
            ("{name: a, type: map}", "Option<BTreeMap<String, String>>"),
            ("{name: a, type: object}", "Option<serde_json::Value>"),
            ("{name: a, type: secretKeyRef, required: true}", "SecretKeyRef"),
        ];
        for (yaml, expected) in table {
            assert_eq!(rust_type("NATSTrigger", &field(yaml)), expected, "{yaml}");
        }
    }

    #[test]
    fn each_default_becomes_the_rust_expression_of_its_type() {
        let table = [
            ("{name: a, type: string, default: \"x \\\"y\\\"\"}", "\"x \\\"y\\\"\".to_owned()"),
            ("{name: a, type: integer, default: -3}", "-3"),
            ("{name: a, type: number, default: 2}", "2.0"),
            ("{name: a, type: boolean, default: true}", "true"),
            ("{name: a, type: enum, values: [at-least-once], default: at-least-once}", "Mode::AtLeastOnce"),
            ("{name: a, type: list, items: number, default: [1, 0.5]}", "vec![1.0, 0.5]"),
            ("{name: a, type: list, default: []}", "Vec::new()"),
            (
                "{name: a, type: map, default: {b: \"2\", a: \"1\"}}",
                "BTreeMap::from([(\"a\".to_owned(), \"1\".to_owned()), (\"b\".to_owned(), \"2\".to_owned())])",
            ),
            ("{name: a, type: map, default: {}}", "BTreeMap::new()"),
        ];
        for (yaml, expected) in table {
            let f = field(yaml);
            let default = f.default.clone().expect("a default");
            assert_eq!(default_expr(&f, &default, "Mode"), expected, "{yaml}");
        }
    }

    #[test]
    fn a_number_default_is_serialized_as_kube_serializes_the_float() {
        assert_eq!(default_json(&field("{name: a, type: number, default: 2}"), &json!(2)), json!(2.0));
        assert_eq!(default_json(&field("{name: a, type: integer, default: 2}"), &json!(2)), json!(2));
        let list = field("{name: a, type: list, items: number, default: [1]}");
        assert_eq!(default_json(&list, &json!([1])), json!([1.0]));
    }
}
