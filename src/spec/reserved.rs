//! Names a spec cannot take because the generated code or Rust itself
//! already uses them. A kind that shadows one of them (`Trigger`,
//! `CustomResourceExt`, `Clone`) gives a repository that does not compile,
//! or worse, one that compiles and means something else; a crate named like
//! a sysroot crate (`test`, `std`) cannot build its own tests.

/// Type-namespace names the generated `apis` module and the controller
/// runtime define, import or re-export, and the prelude names the generated
/// types derive or mention. The types of a kind (`<Kind>`, `<Kind>Spec`,
/// `<Kind>Status`, `<Kind><Field>` enums) must avoid every one of them.
///
/// Kept by hand, proven complete by the test below, which reads every `use`
/// and every public type of the runtime (`runtime/src`) and the `apis`
/// templates: a runtime change that imports a new name fails it.
#[rustfmt::skip]
pub const TYPE_NAMES: &[&str] = &[
    // Rust's prelude and the derives of the generated types.
    "AsMut", "AsRef", "Box", "Clone", "Copy", "Debug", "Default", "Drop", "Eq", "Err", "Extend", "Fn",
    "FnMut", "FnOnce", "From", "Hash", "Into", "IntoIterator", "Iterator", "None", "Ok", "Option", "Ord",
    "PartialEq", "PartialOrd", "Result", "Send", "Sized", "Some", "String", "Sync", "ToOwned", "ToString",
    "Unpin", "Vec",
    // The generated `apis` module: imports, the Function, the aliases the runtime uses.
    "BTreeMap", "Condition", "CustomResource", "CustomResourceDefinition", "CustomResourceExt", "Deserialize",
    "Function", "FunctionSpec", "JsonSchema", "LabelSelector", "SecretKeyRef", "Serialize", "Trigger",
    "TriggerSpec", "TriggerStatus", "FINALIZER", "MANAGER", "SOURCE", "VERSION",
    // The runtime: its types and what it imports.
    "Action", "Api", "Arc", "AsyncReadExt", "AsyncWriteExt", "AtomicBool", "AtomicU64", "AtomicUsize",
    "BackoffPolicy", "Body", "BoxFuture", "Bytes", "CancellationToken", "Client", "Config", "ConsumerContext",
    "ConsumerKey", "Consumers", "Context", "Controller", "Counter", "DeadLetter", "DeadLetterTarget",
    "DeliveryMode", "DeliverySpec", "Desired", "Duration", "EnvFilter", "Error", "Event", "EventType",
    "FailureReporter", "FinalizerEvent", "FromStr", "Full", "FunctionRef", "FunctionUrl", "HashMap", "HeaderValue", "Health",
    "Histogram", "HttpConnector", "Infallible", "Instant", "Invoker", "IsTerminal", "JoinHandle", "KubeEvent",
    "ListParams", "LogFormat", "Method", "Metrics", "Mutex", "Notify", "ObjectRef", "ObjectReference",
    "Ordering", "Outcome", "Patch", "PatchParams", "Recorder", "Registry", "Reporter", "Request", "Resolved",
    "Resource", "ResourceExt", "Response", "RetryPolicy", "Runtime", "Selector", "SelectorExt", "Semaphore",
    "Service", "Settings", "SignalKind", "SignedDuration", "Sink", "SinkOptions", "SocketAddr", "Source", "SourceError",
    "StatusCode", "Store", "StreamExt", "TaskTracker", "TcpListener", "Time", "Timestamp", "TokioExecutor",
    "TokioIo", "UnboundedReceiver", "UnboundedSender", "Uri", "Value",
    // The runtime's test kit (compiled for tests only, but the names are taken there).
    "Behaviour", "BodyExt", "LoopbackFunction", "Tally", "Write",
    // Offset commits.
    "Offsets", "VecDeque", "FutureExt",
    // What a source gives the runtime.
    "EventSource", "Future", "Objects", "ObjectsError", "Target",
    // `send-event`.
    "ExitCode", "SUBCOMMAND", "SendArgs",
];

/// Whether `name` is a type name the generated code already uses.
pub fn is_type_name(name: &str) -> bool {
    TYPE_NAMES.contains(&name)
}

/// Crates of the sysroot and other names rustc and Cargo give a meaning:
/// a package (or its library) named so shadows them, and at least `cargo
/// test` stops building (`test` is the test harness's own crate).
pub const CRATE_NAMES: &[&str] = &["alloc", "core", "proc-macro", "std", "test", "build", "crdgen"];

/// Whether `name` (with `-` and `_` alike, as Cargo compares them) is a
/// crate name the generated repository cannot take. Every package of a
/// `Cargo.lock` template counts, which covers each source's dependencies:
/// a test in `cargo_lock` proves each template locks what its repositories
/// declare.
pub fn is_crate_name(name: &str) -> bool {
    let name = name.replace('_', "-");
    CRATE_NAMES.contains(&name.as_str())
        || crate::runtime::dependency_names().iter().any(|d| d.replace('_', "-") == name)
        || crate::cargo_lock::package_names().any(|d| d.replace('_', "-") == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every capitalised name in a `use` item and every public type defined in `text`.
    fn names_in(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_use = false;
        for line in text.lines().map(str::trim) {
            let starts_use = line.starts_with("use ") || line.starts_with("pub use ");
            if starts_use || in_use {
                out.extend(
                    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
                        .map(str::to_owned),
                );
                in_use = !line.ends_with(';');
            }
            let mut words = line.split_whitespace();
            if words.next().is_some_and(|w| w.starts_with("pub"))
                && let Some(kw) = words.next()
                && ["struct", "enum", "type", "trait", "const"].contains(&kw)
                && let Some(name) = words.next()
            {
                let name: String =
                    name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.push(name);
                }
            }
        }
        out
    }

    #[test]
    fn every_name_the_runtime_and_the_apis_templates_use_is_reserved() {
        let templates = [
            include_str!("../../templates/src/apis/mod.rs.jinja"),
            include_str!("../../templates/src/apis/kubeless/mod.rs.jinja"),
            include_str!("../../templates/src/apis/kubeless/__version__/mod.rs.jinja"),
            include_str!("../../templates/src/apis/kubeless/__version__/__module__.rs.jinja"),
            include_str!("../../templates/src/apis/kubeless/__version__/function.rs.jinja"),
            include_str!("../../templates/src/lib.rs.jinja"),
        ];
        let mut missing: Vec<String> = crate::runtime::files()
            .into_iter()
            .map(|(_, text)| text)
            .chain(templates)
            .flat_map(names_in)
            // A kind has no `_`: such names (constants) cannot clash.
            .filter(|n| !n.contains('_') && !is_type_name(n))
            .collect();
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "add to TYPE_NAMES: {missing:?}");
    }

    #[test]
    fn runtime_dependencies_and_sysroot_crates_are_reserved() {
        for name in ["kube", "kube-runtime", "kube_runtime", "hyper", "test", "proc_macro", "async-nats"] {
            assert!(is_crate_name(name), "{name}");
        }
        assert!(!is_crate_name("nats-trigger"));
        for indirect in ["log", "mio", "tower", "h2", "kube-client"] {
            assert!(is_crate_name(indirect), "{indirect}: an indirect dependency");
        }
    }
}
