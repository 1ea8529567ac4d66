//! Names: everything derived from the spec's identifiers, computed once.
//!
//! Templates never derive a name themselves; they place what this module
//! computed, so a kind or a crate name is spelled the same way in every file.

use heck::{ToSnakeCase, ToUpperCamelCase};
use serde::Serialize;

use crate::spec::Spec;

/// Words that are acronyms in Kubeless kinds (`NATSTrigger`, not `NatsTrigger`).
const ACRONYMS: &[&str] = &[
    "amqp", "api", "aws", "dns", "gcp", "grpc", "http", "https", "iot", "jms", "mqtt", "nats", "nsq", "s3",
    "sftp", "smtp", "sns", "sqs", "ssh", "tcp", "udp", "url",
];

/// Single words that Kubeless spells as two (`cronjob` → `CronJob`).
const COMPOUNDS: &[(&str, &str)] = &[
    ("cronjob", "CronJob"),
    ("eventhub", "EventHub"),
    ("pubsub", "PubSub"),
    ("rabbitmq", "RabbitMQ"),
    ("activemq", "ActiveMQ"),
    ("zeromq", "ZeroMQ"),
    ("jetstream", "JetStream"),
];

pub const DEFAULT_GROUP: &str = "kubeless.io";
pub const DEFAULT_VERSION: &str = "v1beta1";

/// All derived names of a trigger.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Names {
    /// Event-source name (`nats`).
    pub source: String,
    /// `NATS`: the source as it appears inside the kind.
    pub source_title: String,
    /// `NATSTrigger`.
    pub kind: String,
    /// `natstriggers`.
    pub plural: String,
    /// `natstrigger`.
    pub singular: String,
    pub short_names: Vec<String>,
    /// `kubeless.io`.
    pub group: String,
    /// `v1beta1`.
    pub version: String,
    /// `kubeless.io/v1beta1`.
    pub api_version: String,
    /// `natstriggers.kubeless.io`: the CRD name and the `event-namespace` header.
    pub crd_name: String,
    /// `nats-trigger`: Cargo package and repository directory.
    pub crate_name: String,
    /// `nats_trigger`: the library crate as Rust code names it.
    pub crate_ident: String,
    /// `nats_trigger`: module (and file) of the trigger types.
    pub module: String,
    /// `nats-trigger-controller`: the controller binary and Deployment.
    pub binary: String,
    /// `kubeless/nats-trigger-controller`.
    pub image: String,
    /// `kubeless.io/natstrigger`: the finalizer, as the Kubeless originals spell it.
    pub finalizer: String,
    /// `nats-trigger-crd.yaml`.
    pub crd_file: String,
    /// `nats.jsonnet`.
    pub jsonnet_file: String,
    /// `nats.yaml`: the manifest rendered from the jsonnet.
    pub manifest_file: String,
}

impl Names {
    /// Derive every name from a spec. Overrides in the spec win.
    pub fn derive(spec: &Spec) -> Names {
        let source = spec.source.clone();
        let source_title = title_of(&source);
        let kind = spec.kind.clone().unwrap_or_else(|| format!("{source_title}Trigger"));
        let singular = spec.singular.clone().unwrap_or_else(|| kind.to_lowercase());
        let plural = spec.plural.clone().unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
        let group = spec.group.clone().unwrap_or_else(|| DEFAULT_GROUP.to_owned());
        let version = spec.version.clone().unwrap_or_else(|| DEFAULT_VERSION.to_owned());
        let crate_name = spec.crate_name.clone().unwrap_or_else(|| format!("{source}-trigger"));
        let binary = format!("{source}-trigger-controller");
        let image = spec.image.clone().unwrap_or_else(|| format!("kubeless/{binary}"));
        Names {
            source_title,
            api_version: format!("{group}/{version}"),
            crd_name: format!("{plural}.{group}"),
            crate_ident: crate_name.replace('-', "_"),
            module: format!("{}_trigger", source.replace('-', "_")),
            finalizer: format!("{group}/{singular}"),
            crd_file: format!("{source}-trigger-crd.yaml"),
            jsonnet_file: format!("{source}.jsonnet"),
            manifest_file: format!("{source}.yaml"),
            short_names: spec.short_names.clone(),
            source,
            kind,
            plural,
            singular,
            group,
            version,
            crate_name,
            binary,
            image,
        }
    }

    /// The derived names as (label, value) rows, for confirmation prompts and `--dry-run`.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", self.kind.clone()),
            ("plural", self.plural.clone()),
            ("singular", self.singular.clone()),
            ("CRD", self.crd_name.clone()),
            ("API version", self.api_version.clone()),
            ("crate", self.crate_name.clone()),
            ("binary", self.binary.clone()),
            ("image", self.image.clone()),
            ("finalizer", self.finalizer.clone()),
        ]
    }
}

/// `nats` → `NATS`, `cronjob` → `CronJob`, `google-pubsub` → `GooglePubSub`.
pub fn title_of(source: &str) -> String {
    source
        .split('-')
        .map(|word| {
            if ACRONYMS.contains(&word) {
                word.to_uppercase()
            } else if let Some((_, spelled)) = COMPOUNDS.iter().find(|(w, _)| *w == word) {
                (*spelled).to_owned()
            } else {
                word.to_upper_camel_case()
            }
        })
        .collect()
}

/// The Rust field name for a lowerCamel JSON name (`maxInFlight` → `max_in_flight`).
pub fn rust_field_name(json_name: &str) -> String {
    json_name.to_snake_case()
}

/// The Rust type of an `enum` field of `kind` (`NATSTrigger` + `mode` → `NATSTriggerMode`).
pub fn enum_type_name(kind: &str, json_name: &str) -> String {
    format!("{kind}{}", json_name.to_upper_camel_case())
}

/// The Rust variant name for an enum value (`at-least-once` → `AtLeastOnce`).
pub fn variant_name(value: &str) -> String {
    value.to_upper_camel_case()
}

/// Rust keywords (strict and reserved, 2024 edition) that cannot be field names.
pub const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn kind_of(source: &str) -> String {
        Names::derive(&Spec::empty(source)).kind
    }

    #[test]
    fn kinds_follow_kubeless_spelling() {
        assert_eq!(kind_of("nats"), "NATSTrigger");
        assert_eq!(kind_of("http"), "HTTPTrigger");
        assert_eq!(kind_of("kafka"), "KafkaTrigger");
        assert_eq!(kind_of("mqtt"), "MQTTTrigger");
        assert_eq!(kind_of("sqs"), "SQSTrigger");
        assert_eq!(kind_of("cronjob"), "CronJobTrigger");
        assert_eq!(kind_of("kinesis"), "KinesisTrigger");
        assert_eq!(kind_of("google-pubsub"), "GooglePubSubTrigger");
        assert_eq!(kind_of("aws-sqs"), "AWSSQSTrigger");
    }

    #[test]
    fn nats_names_match_the_kubeless_repo() {
        let n = Names::derive(&Spec::empty("nats"));
        assert_eq!(n.plural, "natstriggers");
        assert_eq!(n.singular, "natstrigger");
        assert_eq!(n.crd_name, "natstriggers.kubeless.io");
        assert_eq!(n.finalizer, "kubeless.io/natstrigger");
        assert_eq!(n.image, "kubeless/nats-trigger-controller");
        assert_eq!(n.module, "nats_trigger");
        assert_eq!(n.crate_ident, "nats_trigger");
    }

    #[test]
    fn overrides_win() {
        let mut spec = Spec::empty("nats");
        spec.kind = Some("NatsEvent".into());
        spec.group = Some("events.example.com".into());
        let n = Names::derive(&spec);
        assert_eq!(n.kind, "NatsEvent");
        assert_eq!(n.plural, "natsevents");
        assert_eq!(n.crd_name, "natsevents.events.example.com");
    }
}
