//! The CustomResourceDefinition, built from the model exactly as kube-derive
//! builds it from the generated Rust types, and serialized with the same
//! serializer the generated `crdgen` uses. The generated repository's `crd`
//! test fails if the two ever disagree.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::model::{Model, TypesModel};
use crate::spec::Association;

/// LabelSelector's schema as k8s-openapi 0.29 (feature `schemars`) and kube 5 emit it.
const LABEL_SELECTOR: &str = include_str!("schemas/label_selector.json");
/// Condition's schema (the items of `status.conditions`), from the same source.
const CONDITION: &str = include_str!("schemas/condition.json");

/// `spec.delivery`'s schema: the runtime's `policy::DeliverySpec` as kube 5 emits it.
const DELIVERY: &str = include_str!("schemas/delivery.json");

/// The doc comments of the generated `<Kind>Status` and `SecretKeyRef`
/// structs, which kube-derive turns into their schema descriptions: the
/// template places these, and the CRD built here uses the same words.
#[derive(serde::Serialize)]
pub struct Docs {
    pub status: &'static str,
    pub observed_generation: &'static str,
    pub functions: &'static str,
    pub conditions: &'static str,
    pub secret_name: &'static str,
    pub secret_key: &'static str,
}

pub const DOCS: Docs = Docs {
    status: "Observed state of the trigger, written by its controller.",
    observed_generation: "The `metadata.generation` this status describes.",
    functions: "Functions the trigger currently delivers events to.",
    conditions: "Current conditions; `Ready` says whether events are being delivered.",
    secret_name: "Name of the Secret, in the trigger's namespace.",
    secret_key: "Key within the Secret.",
};

/// The JSON name of the delivery policy every trigger spec carries.
pub const DELIVERY_FIELD: &str = "delivery";

/// The CRD as YAML, byte-identical to `cargo run --bin crdgen` in the generated repo.
pub fn yaml(model: &Model) -> String {
    serde_saphyr::to_string(&build(model)).expect("a CRD serializes to YAML")
}

pub fn build(model: &Model) -> CustomResourceDefinition {
    let n = &model.names;
    let types = &model.types;
    let root = json!({
        "description": types.description,
        "properties": {
            "spec": spec_schema(types),
            "status": status_schema(),
        },
        "required": ["spec"],
        "title": n.kind,
        "type": "object",
    });
    let schema: JSONSchemaProps = serde_json::from_value(root).expect("the schema fits JSONSchemaProps");
    CustomResourceDefinition {
        metadata: ObjectMeta { name: Some(n.crd_name.clone()), ..ObjectMeta::default() },
        spec: CustomResourceDefinitionSpec {
            group: n.group.clone(),
            names: CustomResourceDefinitionNames {
                categories: Some(vec!["kubeless".to_owned()]),
                kind: n.kind.clone(),
                plural: n.plural.clone(),
                short_names: (!n.short_names.is_empty()).then(|| n.short_names.clone()),
                singular: Some(n.singular.clone()),
                list_kind: None,
            },
            scope: "Namespaced".to_owned(),
            versions: vec![CustomResourceDefinitionVersion {
                additional_printer_columns: Some(
                    types
                        .columns
                        .iter()
                        .map(|c| CustomResourceColumnDefinition {
                            json_path: c.json_path.clone(),
                            name: c.name.clone(),
                            type_: c.ty.clone(),
                            ..CustomResourceColumnDefinition::default()
                        })
                        .collect(),
                ),
                name: n.version.clone(),
                schema: Some(CustomResourceValidation { open_api_v3_schema: Some(schema) }),
                served: true,
                storage: true,
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                deprecated: None,
                deprecation_warning: None,
                selectable_fields: None,
            }],
            conversion: None,
            preserve_unknown_fields: None,
        },
        status: None,
    }
}

fn spec_schema(model: &TypesModel) -> Value {
    let mut properties: BTreeMap<String, Value> =
        model.fields.iter().map(|f| (f.json_name.clone(), f.schema.clone())).collect();
    let association = match model.association.kind {
        Association::Selector => {
            let mut s: Value = serde_json::from_str(LABEL_SELECTOR).expect("fixture is JSON");
            s["description"] = json!(model.association.description);
            s
        }
        Association::Function => json!({"type": "string", "description": model.association.description}),
    };
    properties.insert(model.association.field.to_owned(), association);
    properties.insert(DELIVERY_FIELD.to_owned(), serde_json::from_str(DELIVERY).expect("fixture is JSON"));
    let mut required: Vec<String> =
        model.fields.iter().filter(|f| f.required).map(|f| f.json_name.clone()).collect();
    required.push(model.association.field.to_owned());
    required.sort();
    json!({
        "description": model.spec_description,
        "properties": properties,
        "required": required,
        "type": "object",
    })
}

/// Schema of the generated `<Kind>Status` struct (templates/src/apis/…/__module__.rs.jinja).
fn status_schema() -> Value {
    let condition: Value = serde_json::from_str(CONDITION).expect("fixture is JSON");
    json!({
        "description": DOCS.status,
        "nullable": true,
        "properties": {
            "conditions": {
                "default": [],
                "description": DOCS.conditions,
                "items": condition,
                "type": "array",
            },
            "functions": {
                "default": [],
                "description": DOCS.functions,
                "items": {"type": "string"},
                "type": "array",
            },
            "observedGeneration": {
                "description": DOCS.observed_generation,
                "format": "int64",
                "nullable": true,
                "type": "integer",
            },
        },
        "type": "object",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Field, FieldType, Spec};

    fn spec(association: Association, fields: Vec<Field>) -> Spec {
        Spec { association, fields, ..Spec::empty("mqtt") }
    }

    fn schema(spec: &Spec) -> Value {
        serde_json::to_value(build(&Model::new(spec))).expect("json")["spec"]["versions"][0]["schema"]
            ["openAPIV3Schema"]
            .clone()
    }

    #[test]
    fn the_association_field_is_required_and_shaped_by_the_association() {
        for (association, field, ty) in [
            (Association::Selector, "functionSelector", "object"),
            (Association::Function, "functionName", "string"),
        ] {
            let mut topic = Field::new("topic", FieldType::String);
            topic.required = true;
            let s = schema(&spec(association, vec![topic, Field::new("qos", FieldType::Integer)]));
            let spec_schema = &s["properties"]["spec"];
            assert_eq!(spec_schema["properties"][field]["type"], ty, "{field}");
            assert_eq!(
                spec_schema["required"],
                json!([field, "topic"].iter().copied().collect::<std::collections::BTreeSet<_>>()),
                "sorted, association included"
            );
            assert!(
                spec_schema["properties"][DELIVERY_FIELD].is_object(),
                "every trigger has a delivery policy"
            );
            assert_eq!(s["required"], json!(["spec"]));
        }
    }

    #[test]
    fn the_status_schema_says_what_the_generated_struct_says() {
        let s = schema(&spec(Association::Function, Vec::new()));
        let status = &s["properties"]["status"];
        assert_eq!(status["description"], DOCS.status);
        assert_eq!(status["properties"]["functions"]["description"], DOCS.functions);
        assert_eq!(status["properties"]["conditions"]["description"], DOCS.conditions);
        assert_eq!(status["properties"]["observedGeneration"]["description"], DOCS.observed_generation);
    }

    #[test]
    fn names_and_subresources_follow_kubeless() {
        let crd = build(&Model::new(&Spec {
            short_names: vec!["mq".into()],
            ..spec(Association::Function, Vec::new())
        }));
        assert_eq!(crd.metadata.name.as_deref(), Some("mqtttriggers.kubeless.io"));
        assert_eq!(crd.spec.names.kind, "MQTTTrigger");
        assert_eq!(crd.spec.names.short_names, Some(vec!["mq".to_owned()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["kubeless".to_owned()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert!(version.served && version.storage);
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<&str> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(columns.contains(&"Function"), "{columns:?}");
    }
}
