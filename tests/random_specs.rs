//! Many generated specs, valid and not: validation never panics, every spec it
//! accepts renders, and what it renders keeps the promises the snapshots check
//! (ownership headers, rustfmt-stable constants). Deterministic: a fixed seed.

use kubeless_trigger::plan::{Owner, has_one_header};
use kubeless_trigger::render;
use kubeless_trigger::spec::{self, Association, Field, FieldType, ScalarType, Spec};
use serde_json::{Value, json};

mod common;

/// xorshift64*: enough randomness for test inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMES: &[&str] = &[
    "topic",
    "maxInFlight",
    "type",
    "match",
    "self",
    "kind",
    "spec",
    "functionName",
    "region",
    "shardID",
    "aB",
    "x1",
    "payload",
    "weights",
    "Bad",
    "with-dash",
    "",
    "value",
    "default",
    "enabled",
];
const VALUES: &[&str] = &["a", "b-c", "D.e", "f_g", "1st", "Self", "a", "long-value-name", "x y"];

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => json!("text \"quoted\" ünïcode"),
        1 => json!(rng.below(1000) as i64 - 500),
        2 => json!(rng.below(1000) as f64 / 7.0),
        3 => json!(rng.chance(50)),
        4 => json!(["a", "b"]),
        5 => json!([1, 2.5]),
        6 => json!({"k": "v", "n": "m"}),
        7 => json!({"k": 1}),
        _ => json!(rng.pick(VALUES)),
    }
}

fn random_field(rng: &mut Rng) -> Field {
    let mut f = Field::new(rng.pick(NAMES), rng.pick(&FieldType::ALL));
    if rng.chance(15) {
        f.rust_name = Some((rng.pick(&["payload_type", "match_rule", "type", "Bad", "x"])).to_owned());
    }
    f.required = rng.chance(30);
    if rng.chance(50) {
        f.default = Some(random_value(rng));
    }
    if rng.chance(60) {
        f.description = Some(
            (rng.pick(&["One line.", "Two\nlines", "```\ncode\n```", "  padded  ", "tab\there"])).to_owned(),
        );
    }
    if f.ty == FieldType::Enum || rng.chance(5) {
        f.values = (0..rng.below(4)).map(|_| (rng.pick(VALUES)).to_owned()).collect();
    }
    if f.ty == FieldType::List || rng.chance(5) {
        f.items = Some(rng.pick(&ScalarType::ALL));
    }
    if rng.chance(20) {
        f.pattern =
            Some((rng.pick(&["^[a-z]+$", "(", "^\"#x$", ".*", "a\rb", "^[0-9]{3}$", "^@daily$"])).to_owned());
    }
    if rng.chance(15) {
        let examples = [json!("@daily"), json!("123"), json!(5), json!({"name": "s", "key": "k"})];
        f.example = Some(examples[rng.below(examples.len())].clone());
    }
    if rng.chance(20) {
        f.min_length = Some(rng.below(5) as u64);
        f.max_length = Some(rng.below(300) as u64);
    }
    if rng.chance(20) {
        f.minimum = Some((rng.below(100) as i64 - 50).into());
        let bounds = [json!(1e12), json!(3.5), json!(-60), json!(10), json!(i64::MAX)];
        f.maximum = bounds[rng.below(bounds.len())].as_number().cloned();
    }
    f
}

fn random_spec(rng: &mut Rng) -> Spec {
    let mut spec = Spec::empty(rng.pick(&["nats", "google-pubsub", "a", "cronjob", "x-y-z", "Bad", "s3"]));
    spec.association = rng.pick(&Association::ALL);
    if rng.chance(20) {
        spec.kind = Some(
            (rng.pick(&["NatsEvent", "String", "Trigger", "lowercase", "VeryLongKindNameForTestingTrigger"]))
                .to_owned(),
        );
    }
    if rng.chance(20) {
        spec.group = Some((rng.pick(&["events.example-company.com", "nodot", "a.b"])).to_owned());
    }
    if rng.chance(20) {
        spec.version = Some((rng.pick(&["v1", "v2alpha1", "beta"])).to_owned());
    }
    if rng.chance(10) {
        spec.crate_name = Some((rng.pick(&["kube", "my-trigger", "Bad"])).to_owned());
    }
    spec.fields = (0..rng.below(6)).map(|_| random_field(rng)).collect();
    // Random fields rarely fit a built-in source; mostly opt out of it.
    spec.built_in = rng.chance(10);
    spec
}

#[test]
fn validation_is_total_and_every_valid_spec_renders_well() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..400 {
        let spec = random_spec(&mut rng);
        if !spec::validate(&spec).is_empty() {
            invalid += 1;
            continue;
        }
        valid += 1;
        let plan = render::repository(&spec)
            .unwrap_or_else(|e| panic!("round {round}: valid spec failed to render: {e}\n{spec:#?}"));
        for f in &plan.files {
            // Cargo.lock is cargo's format: cargo drops any comment added to it.
            assert!(
                has_one_header(&f.content) || (f.path == "Cargo.lock" && f.owner == Owner::Scaffolded),
                "round {round}: {} lacks its header",
                f.path
            );
            if f.owner == Owner::Generated && f.path.ends_with(".rs") && !f.path.contains("/apis/") {
                for line in
                    f.content.lines().filter(|l| l.trim_start().starts_with("const") || l.contains(" const "))
                {
                    assert!(
                        line.chars().count() <= 110 || !line.ends_with(';'),
                        "round {round}: {}: {line}",
                        f.path
                    );
                }
            }
        }
        for f in &plan.files {
            // Every generated Rust file parses: no literal or comment the spec
            // put there breaks the syntax.
            if f.path.ends_with(".rs") {
                syn::parse_file(&f.content)
                    .unwrap_or_else(|e| panic!("round {round}: {} does not parse: {e}\n{spec:#?}", f.path));
            }
            // Every generated YAML file parses.
            if f.path.ends_with(".yaml") || f.path.ends_with(".yml") {
                serde_saphyr::from_multiple::<Value>(&f.content)
                    .unwrap_or_else(|e| panic!("round {round}: {} is not YAML: {e}\n{spec:#?}", f.path));
            }
        }
        // Every example trigger object is valid against the CRD it ships with.
        let crd_file = format!("{}-trigger-crd.yaml", spec.source);
        let crd: Value = serde_saphyr::from_str(&plan.get(&crd_file).expect("the CRD").content).unwrap();
        let examples = common::example_specs(|path| plan.get(path).map(|f| f.content.clone()));
        assert_eq!(examples.len(), 3, "round {round}");
        for (place, example) in examples {
            let problems = common::openapi::violations(&example, common::openapi::spec_schema(&crd));
            assert!(problems.is_empty(), "round {round}: {place}: {problems:#?}\n{spec:#?}");
        }
        // The recorded spec reads back as the same spec.
        let recorded = plan.files.iter().find(|f| f.path == "trigger.yaml").expect("trigger.yaml");
        assert_eq!(
            spec::from_text(&recorded.content, "trigger.yaml").expect("reads back"),
            spec,
            "round {round}"
        );
    }
    assert!(
        valid >= 40 && invalid >= 40,
        "the generator should hit both sides: {valid} valid, {invalid} invalid"
    );
}
