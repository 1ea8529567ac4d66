//! Inputs the tool used to accept silently or report falsely (the safety
//! issue, items 5-9): each is refused with its spec key and what would be
//! valid, and exit status 2, or accepted and then really works.

use predicates::prelude::*;
use predicates::str::contains;

mod common;
use common::cli;

// 7. `association` is required: never defaulted behind the user's back.

#[test]
fn association_is_missing_without_a_terminal_unless_defaults_or_a_preset_give_it() {
    let missing = contains("association: missing (--association selector|function)");
    cli().args(["new", "widget", "--no-input", "--dry-run"]).assert().code(2).stderr(missing.clone());
    // No terminal: stdin is not one here.
    cli().args(["new", "widget", "--dry-run"]).write_stdin("").assert().code(2).stderr(missing);
    cli().args(["new", "widget", "--defaults", "--dry-run"]).assert().success();
    cli().args(["new", "widget", "--no-input", "--association", "function", "--dry-run"]).assert().success();
    cli().args(["new", "nats", "--no-input", "--dry-run"]).assert().success();
    // Listed together with the other problems.
    cli()
        .args(["new", "widget", "--no-input", "--group", "nodot", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("2 problems").and(contains("association: missing")).and(contains("--group")));
}

// 5. Accepted specs compile: reserved kinds and crate names are refused.

#[test]
fn kinds_the_generated_code_already_uses_are_refused() {
    for kind in ["Self", "CustomResourceExt", "CustomResourceDefinition", "Context", "Config", "Trigger"] {
        cli()
            .args(["new", "widget", "--defaults", "--dry-run", "--kind", kind])
            .assert()
            .code(2)
            .stderr(contains("kind").and(contains(kind)).and(contains("--kind")));
    }
}

#[test]
fn crate_names_rust_reserves_are_refused() {
    for name in ["test", "std", "core", "alloc", "proc-macro", "proc_macro", "hyper", "kube-runtime"] {
        cli()
            .args(["new", "widget", "--defaults", "--dry-run", "--crate", name])
            .assert()
            .code(2)
            .stderr(contains("crate").and(contains(name)));
    }
}

/// Render `spec` (YAML) through the library and return the file at `path`.
fn rendered(spec: &str, path: &str) -> String {
    let spec = kubeless_trigger::spec::from_text(spec, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let plan = kubeless_trigger::render::render(&spec).unwrap();
    plan.get(path).unwrap_or_else(|| panic!("{path} not rendered")).content.clone()
}

/// A minimal spec with `fields` (YAML, indented as a list under `fields:`).
fn spec_with_fields(fields: &str) -> String {
    format!("formatVersion: 1\nsource: widget\nassociation: selector\nfields:\n{fields}")
}

const TYPES: &str = "src/apis/kubeless/v1beta1/widget_trigger.rs";

#[test]
fn a_pattern_with_a_carriage_return_is_written_as_rust_that_parses() {
    let spec = spec_with_fields("  - name: a\n    type: string\n    pattern: \"a\\rb\\\"#c\"\n");
    let types = rendered(&spec, TYPES);
    syn::parse_file(&types).unwrap_or_else(|e| panic!("{e}\n{types}"));
}

#[test]
fn bidirectional_controls_are_refused_naming_the_key() {
    for (key, yaml) in [
        ("fields[0].description", "    description: \"left \\u202E right\"\n"),
        ("fields[0].pattern", "    pattern: \"^a\\u2066b$\"\n"),
        ("fields[0].default", "    default: \"x\\u2069\"\n"),
    ] {
        let spec = spec_with_fields(&format!("  - name: a\n    type: string\n{yaml}"));
        cli()
            .args(["new", "--dry-run", "--spec", "-"])
            .write_stdin(spec)
            .assert()
            .code(2)
            .stderr(contains(key).and(contains("bidirectional")));
    }
    let spec = "formatVersion: 1\nsource: widget\nassociation: selector\ndescription: \"\\u202Dx\"\n";
    cli()
        .args(["new", "--dry-run", "--spec", "-"])
        .write_stdin(spec)
        .assert()
        .code(2)
        .stderr(contains("description").and(contains("U+202D")));
}

// 8. Integer bounds and defaults are held exactly over the whole i64 range.

#[test]
fn integer_bounds_and_defaults_are_exact_over_the_whole_i64_range() {
    let spec = spec_with_fields(
        "  - name: big\n    type: integer\n    minimum: -9223372036854775808\n    maximum: 9223372036854775807\n    default: 9223372036854775807\n",
    );
    let types = rendered(&spec, TYPES);
    assert!(types.contains("max = 9223372036854775807_i64"), "{types}");
    assert!(types.contains("min = -9223372036854775808_i64"), "{types}");
    assert!(types.contains("9223372036854775807\n"), "the default, exactly: {types}");
    syn::parse_file(&types).unwrap();
    // One above a bound near 2^53 is outside it, though both round to the same double.
    let near = spec_with_fields(
        "  - name: count\n    type: integer\n    maximum: 9007199254740992\n    default: 9007199254740993\n",
    );
    cli()
        .args(["new", "--dry-run", "--spec", "-"])
        .write_stdin(near)
        .assert()
        .code(2)
        .stderr(contains("fields[0].default").and(contains("9007199254740993")));
    // Beyond i64 the message says so.
    let beyond = spec_with_fields("  - name: count\n    type: integer\n    maximum: 9223372036854775808\n");
    cli()
        .args(["new", "--dry-run", "--spec", "-"])
        .write_stdin(beyond)
        .assert()
        .code(2)
        .stderr(contains("fields[0].maximum").and(contains("-9223372036854775808 to 9223372036854775807")));
    // Whole and fractional bounds of a number field are kept as written.
    let number = spec_with_fields("  - name: r\n    type: number\n    minimum: 0.5\n    maximum: 10\n");
    let recorded = rendered(&number, "trigger.yaml");
    assert!(recorded.contains("minimum: 0.5") && recorded.contains("maximum: 10\n"), "{recorded}");
}

// 9. Parse-level errors are reported at their key, in our words; numbers
// too large for an integer say so.

/// The stderr of `new --dry-run` on `spec`, which must fail with exit 2.
fn refused(spec: &str) -> String {
    let out = cli().args(["new", "--dry-run", "--spec", "-"]).write_stdin(spec.to_owned()).assert().code(2);
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn a_non_finite_default_is_reported_at_its_key_in_our_words() {
    let err = refused(&spec_with_fields("  - name: rate\n    type: number\n    default: .nan\n"));
    assert!(err.contains("fields[0].default (line 7, column 14)"), "{err}");
    assert!(err.contains("not a finite number") && !err.contains("policy"), "{err}");
    assert!(!err.contains("(top level)"), "{err}");
}

#[test]
fn a_duplicate_key_is_reported_at_its_path_in_our_words() {
    let err = refused(&spec_with_fields("  - name: a\n    type: string\n    name: b\n"));
    assert!(err.contains("fields[0].name (line 7, column 5)"), "{err}");
    assert!(err.contains("appears twice") && !err.contains("DuplicateKeyPolicy"), "{err}");
    let err = refused("formatVersion: 1\nsource: a\nsource: b\nassociation: selector\n");
    assert!(err.contains("source (line 3, column 1)") && err.contains("appears twice"), "{err}");
}

#[test]
fn an_integer_beyond_i64_says_so() {
    for big in ["18446744073709551615", "18446744073709551616", "9223372036854775808"] {
        let err =
            refused(&spec_with_fields(&format!("  - name: count\n    type: integer\n    default: {big}\n")));
        assert!(
            err.contains("fields[0].default") && err.contains("outside what an integer field holds"),
            "{err}"
        );
        assert!(!err.contains("found an integer"), "{err}");
    }
    let err = refused(&spec_with_fields(
        "  - name: ids\n    type: list\n    items: integer\n    default: [18446744073709551615]\n",
    ));
    assert!(err.contains("outside what an integer field holds"), "{err}");
}

// 6. The example trigger is valid against its own CRD.

#[test]
fn a_required_field_no_placeholder_fits_needs_an_example() {
    let field =
        "  - name: schedule\n    type: string\n    required: true\n    pattern: '^@(daily|hourly)$'\n";
    let err = refused(&spec_with_fields(field));
    assert!(
        err.contains("fields[0].example (line 5, column 5): needed") && err.contains("^@(daily|hourly)$"),
        "{err}"
    );
    let err = refused(&spec_with_fields(&format!("{field}    example: '@weekly'\n")));
    assert!(err.contains("fields[0].example (line 9, column 14)") && err.contains("does not match"), "{err}");

    let spec = spec_with_fields(&format!("{field}    example: '@daily'\n"));
    let plan = {
        let spec = kubeless_trigger::spec::from_text(&spec, "t.yaml").unwrap();
        kubeless_trigger::render::render(&spec).unwrap()
    };
    let file = |path: &str| plan.get(path).map(|f| f.content.clone());
    assert!(file("examples/trigger.yaml").unwrap().contains("schedule: \"@daily\""));
    let crd: serde_json::Value = serde_saphyr::from_str(&file("widget-trigger-crd.yaml").unwrap()).unwrap();
    let examples = common::example_specs(file);
    assert_eq!(examples.len(), 3);
    for (place, example) in examples {
        let problems = common::openapi::violations(&example, common::openapi::spec_schema(&crd));
        assert!(problems.is_empty(), "{place}: {problems:?}");
    }
}

#[test]
fn examples_are_checked_like_defaults_and_are_in_the_json_schema() {
    for (field, key) in [
        ("  - name: count\n    type: integer\n    maximum: 3\n    example: 4\n", "fields[0].example"),
        ("  - name: ref\n    type: secretKeyRef\n    example: {name: s}\n", "fields[0].example"),
        ("  - name: mode\n    type: enum\n    values: [a, b]\n    example: c\n", "fields[0].example"),
    ] {
        let err = refused(&spec_with_fields(field));
        assert!(err.contains(key), "{field}: {err}");
    }
    let out = cli().arg("schema").assert().success().get_output().stdout.clone();
    let schema: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(schema["$defs"]["Field"]["properties"]["example"].is_object(), "{schema:#}");
}

// 9. Printer columns, the README's field table and the CRD's size.

#[test]
fn fields_named_like_the_fixed_columns_do_not_duplicate_them() {
    let spec = "formatVersion: 1\nsource: widget\nassociation: function\nfields:\n  - name: ready\n    type: boolean\n    required: true\n  - name: age\n    type: integer\n    required: true\n";
    let crd: serde_json::Value = serde_saphyr::from_str(&rendered(spec, "widget-trigger-crd.yaml")).unwrap();
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut unique = columns.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), columns.len(), "{columns:?}");
    assert!(columns.contains(&"SpecReady") && columns.contains(&"SpecAge"), "{columns:?}");
}

#[test]
fn a_pipe_in_a_description_stays_in_its_readme_table_cell() {
    let spec = spec_with_fields("  - name: mode\n    type: string\n    description: \"tcp | udp\"\n");
    let readme = rendered(&spec, "README.md");
    let row = readme.lines().find(|l| l.starts_with("| `mode`")).expect("the field's row");
    assert!(row.contains(r"tcp \| udp"), "{row}");
    assert_eq!(row.matches('|').count() - row.matches(r"\|").count(), 4, "three cells: {row}");
}

#[test]
fn a_crd_over_256_kib_is_refused() {
    let description = "d".repeat(2000);
    let fields: String = (0..150)
        .map(|i| format!("  - name: field{i}\n    type: string\n    description: {description}\n"))
        .collect();
    let err = refused(&spec_with_fields(&fields));
    assert!(err.contains("256 KiB") && err.contains("CRD"), "{err}");
}
