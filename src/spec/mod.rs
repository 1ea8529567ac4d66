//! The spec: the one definition of every input (see ARCHITECTURE.md).
//!
//! The prompt, the flags, the spec file (`trigger.yaml`) and the JSON Schema
//! (`kubeless-trigger schema`) all read and write these types, so a key can
//! never exist in one of them and be missing from another.

pub mod example;
mod load;
mod locate;
pub mod number;
pub mod reserved;
mod shape;
pub mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{LoadError, Parsed, from_text, parse};
pub use validate::{Problem, validate};

/// The spec format this tool writes and reads. Bump it (and add a migration)
/// when a key changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// A Kubeless trigger: the event source, the custom resource that associates it
/// with functions, and the fields of that resource's `spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "kubeless-trigger spec")]
pub struct Spec {
    /// Spec format version; this tool writes and reads `1`.
    pub format_version: u32,
    /// Event-source name, a DNS-1123 label such as `nats` or `google-pubsub`.
    pub source: String,
    /// One sentence saying what the trigger does; becomes the CRD description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Custom resource kind. Default: derived from `source`, acronym-aware
    /// (`nats` → `NATSTrigger`, `cronjob` → `CronJobTrigger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Plural resource name. Default: the lowercased kind plus `s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plural: Option<String>,
    /// Singular resource name. Default: the lowercased kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singular: Option<String>,
    /// Short names for kubectl (`kubectl get <short>`). Default: none, as in Kubeless.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    /// API group of the custom resource. Default: `kubeless.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version of the custom resource. Default: `v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Cargo package name of the generated repository. Default: `<source>-trigger`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "crate")]
    pub crate_name: Option<String>,
    /// Controller image repository, without tag.
    /// Default: `kubeless/<source>-trigger-controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How a trigger object names its functions.
    pub association: Association,
    /// CI files of the generated repository: `github` (GitHub Actions),
    /// `travis` (the guide's `.travis.yml`) or `both`. Default: `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<Ci>,
    /// Whether the repository gets the built-in implementation of `source`
    /// (`kubeless-trigger presets` lists them); it needs the fields that
    /// implementation reads. `false`: a skeleton `src/event_source.rs` to write
    /// yourself, whatever the fields. Default: `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    #[schemars(default = "yes")]
    pub built_in: bool,
    /// The event source's own fields in the custom resource's `spec`.
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// How a trigger object is associated with Kubeless functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Association {
    /// `functionSelector`, a label selector: one trigger, many functions (Kafka, NATS).
    Selector,
    /// `functionName`, a single function in the trigger's namespace (Kinesis, CronJob, HTTP).
    Function,
}

impl Association {
    pub const ALL: [Association; 2] = [Association::Selector, Association::Function];

    /// The JSON name of the association field in the trigger's `spec`.
    pub fn field_name(self) -> &'static str {
        match self {
            Association::Selector => "functionSelector",
            Association::Function => "functionName",
        }
    }

    /// The association field's name in the generated Rust.
    pub fn rust_field(self) -> &'static str {
        match self {
            Association::Selector => "function_selector",
            Association::Function => "function_name",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Association::Selector => "selector",
            Association::Function => "function",
        }
    }
}

/// CI files of the generated repository; each has the four jobs of the
/// Kubeless guide (build, end to end, push latest, release).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Ci {
    /// GitHub Actions: `.github/workflows/ci.yml`.
    Github,
    /// Travis CI: `.travis.yml`, as the guide asks.
    Travis,
    /// Both.
    #[default]
    Both,
}

impl Ci {
    pub const ALL: [Ci; 3] = [Ci::Github, Ci::Travis, Ci::Both];

    pub fn as_str(self) -> &'static str {
        match self {
            Ci::Github => "github",
            Ci::Travis => "travis",
            Ci::Both => "both",
        }
    }

    pub fn github(self) -> bool {
        self != Ci::Travis
    }

    pub fn travis(self) -> bool {
        self != Ci::Github
    }
}

/// One field of the trigger's `spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    /// JSON name, lowerCamelCase (`topic`, `maxInFlight`).
    pub name: String,
    /// Rust field name, when the snake_case form of `name` is not usable
    /// (a Rust keyword such as `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_name: Option<String>,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether every trigger object must set the field.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Value used when a trigger object leaves the field out. Must fit `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Value of the field in the example trigger (`examples/trigger.yaml`,
    /// the README, the generated tests). Must fit `type` and the validation,
    /// like a default. Needed when the field is required and no placeholder
    /// fits its `pattern`; otherwise the example uses one that fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<serde_json::Value>,
    /// What the field means; becomes the schema description and the Rust doc comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Allowed values (type `enum` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Element type (type `list` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ScalarType>,
    /// Regular expression the value must match (type `string`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Minimum length (type `string`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Maximum length (type `string`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Smallest allowed value (types `integer` and `number`). Kept as
    /// written, so integer bounds are exact over the whole i64 range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<serde_json::Number>,
    /// Largest allowed value (types `integer` and `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<serde_json::Number>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

/// The value type of a spec field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    /// One of `values`.
    Enum,
    /// A list of `items`.
    List,
    /// A map of string to string.
    Map,
    /// A free-form JSON object (like CronJob's `payload`).
    Object,
    /// A reference to a key in a Secret in the trigger's namespace (credentials).
    SecretKeyRef,
}

impl FieldType {
    pub const ALL: [FieldType; 9] = [
        FieldType::String,
        FieldType::Integer,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::Enum,
        FieldType::List,
        FieldType::Map,
        FieldType::Object,
        FieldType::SecretKeyRef,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Enum => "enum",
            FieldType::List => "list",
            FieldType::Map => "map",
            FieldType::Object => "object",
            FieldType::SecretKeyRef => "secretKeyRef",
        }
    }

    /// Whether `pattern`, `minLength` and `maxLength` apply.
    pub fn has_length(self) -> bool {
        self == FieldType::String
    }

    /// Whether `minimum` and `maximum` apply.
    pub fn has_range(self) -> bool {
        matches!(self, FieldType::Integer | FieldType::Number)
    }

    /// Whether a `default` can be given.
    pub fn takes_default(self) -> bool {
        !matches!(self, FieldType::Object | FieldType::SecretKeyRef)
    }
}

/// Element type of a `list` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScalarType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ScalarType {
    pub const ALL: [ScalarType; 4] =
        [ScalarType::String, ScalarType::Integer, ScalarType::Number, ScalarType::Boolean];

    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Integer => "integer",
            ScalarType::Number => "number",
            ScalarType::Boolean => "boolean",
        }
    }
}

impl Spec {
    /// An empty spec for `source`: what any source without a preset starts from.
    pub fn empty(source: &str) -> Spec {
        Spec {
            format_version: FORMAT_VERSION,
            source: source.to_owned(),
            description: None,
            kind: None,
            plural: None,
            singular: None,
            short_names: Vec::new(),
            group: None,
            version: None,
            crate_name: None,
            image: None,
            association: Association::Selector,
            ci: None,
            built_in: true,
            fields: Vec::new(),
        }
    }

    /// The JSON Schema of the spec file.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Spec)).expect("a schema serializes")
    }
}

impl Field {
    /// A field with only a name and a type; everything else unset.
    pub fn new(name: &str, ty: FieldType) -> Field {
        Field {
            name: name.to_owned(),
            rust_name: None,
            ty,
            required: false,
            default: None,
            example: None,
            description: None,
            values: Vec::new(),
            items: None,
            pattern: None,
            min_length: None,
            max_length: None,
            minimum: None,
            maximum: None,
        }
    }
}
