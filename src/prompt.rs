//! Interactive prompts for `new` at a terminal. Every answer is checked as it
//! is typed, with the same validation a spec file gets, against the answers
//! it depends on (a maximum against its minimum, a default against every
//! bound), and asked again with the reason and the text as typed. A summary
//! then lets the user write, edit any answer, or cancel; a cancelled run
//! saves its answers as a spec file that `new --spec` reads.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use dialoguer::theme::{ColorfulTheme, SimpleTheme, Theme};

use crate::error::CliError;
use crate::names::Names;
use crate::spec::{self, Association, Ci, Field, FieldType, ScalarType, Spec};
use crate::{apply, ask, sources};

/// What the command line already decided.
#[derive(Debug, Default)]
pub struct Options {
    /// Spec keys set by flags (`kind`, `group`, ...): their questions are skipped.
    pub answered: Vec<&'static str>,
    /// `-o`, when given; otherwise `./<source>-trigger`.
    pub output: Option<PathBuf>,
    /// `--force`: an existing, non-empty output directory is allowed.
    pub force: bool,
    /// `--print-spec`: the last step prints the spec instead of writing.
    pub print: bool,
}

/// Ask for everything, starting from `start` (a preset or an empty spec),
/// and return a spec that passed validation and that the user confirmed.
pub fn run(start: Spec, options: &Options) -> Result<Spec, CliError> {
    let colorful = ColorfulTheme::default();
    let theme: &dyn Theme = if color_enabled() { &colorful } else { &SimpleTheme };
    let mut session = Session { theme, spec: start, options, editing: None };
    // A signal while a prompt waits (SIGTERM, a closed terminal, or a Ctrl-C
    // the prompt does not see) is handled on the signal thread: it saves the
    // answers published so far.
    let output = options.output.clone();
    crate::signals::set_prompt_hook(Some(Box::new(move |signal| {
        // Taken already: the prompts ended and handle what follows.
        let Some(spec) = take_published() else { return true };
        // A list or yes/no prompt interrupted leaves the cursor hidden.
        let _ = console::Term::stderr().show_cursor();
        let why = if signal == 2 {
            "cancelled".to_owned()
        } else {
            format!("interrupted by {}", crate::signals::name(signal))
        };
        crate::talk!("\nerror: {why}; nothing was written; {}", save_answers(&spec, output.as_deref()));
        true
    })));
    let result = session.interview();
    if matches!(result, Err(Stop::Interrupted)) && crate::signals::installed() {
        // A Ctrl-C (or a signal that interrupted the read): the signal
        // thread saves the answers, says so and ends the process.
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    let published = take_published();
    crate::signals::set_prompt_hook(None);
    let _ = console::Term::stderr().show_cursor();
    let output = options.output.as_deref();
    match result {
        Ok(spec) => Ok(spec),
        Err(Stop::Declined) => Err(CliError::Declined(save_answers(&session.spec, output))),
        Err(Stop::Interrupted) => match published {
            Some(_) => Err(CliError::Cancelled(save_answers(&session.spec, output))),
            None => Err(CliError::Cancelled(SavedAnswers::Nothing)),
        },
        Err(Stop::EndOfInput) => Err(CliError::EndOfInput(save_answers(&session.spec, output))),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// The answers as of the last question asked, for the signal thread.
static PUBLISHED: std::sync::Mutex<Option<Spec>> = std::sync::Mutex::new(None);

fn publish(spec: &Spec) {
    *PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(spec.clone());
}

/// Whoever takes the answers saves them: the prompts or the signal thread, never both.
fn take_published() -> Option<Spec> {
    PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
}

/// Where a run that wrote nothing left its answers.
#[derive(Debug)]
pub enum SavedAnswers {
    /// Nothing was answered yet.
    Nothing,
    /// The spec file, and the `-o` to resume with.
    At { path: PathBuf, output: Option<PathBuf> },
    /// Why they could not be saved, and the answers as YAML.
    Failed { why: String, yaml: String },
}

impl fmt::Display for SavedAnswers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SavedAnswers::Nothing => write!(f, "nothing was answered yet"),
            SavedAnswers::At { path, output } => {
                let output = output.as_ref().map(|o| format!(" -o {}", o.display())).unwrap_or_default();
                write!(
                    f,
                    "your answers are saved in {0}; to resume, edit it if you like, then run\n  \
                     kubeless-trigger new --spec {0}{output}",
                    path.display()
                )
            }
            SavedAnswers::Failed { why, yaml } => write!(
                f,
                "your answers could not be saved ({why}); here they are, for a file `new --spec` reads:\n{yaml}"
            ),
        }
    }
}

/// Save `spec` as `./<source>-trigger.yaml` (or `-2`, `-3`, ... when taken:
/// an existing file is never overwritten).
pub fn save_answers(spec: &Spec, output: Option<&std::path::Path>) -> SavedAnswers {
    if spec::validate::check_dns_label(&spec.source).is_err() {
        return SavedAnswers::Nothing;
    }
    let body = match serde_saphyr::to_string(spec) {
        Ok(body) => body,
        Err(e) => return SavedAnswers::Failed { why: e.to_string(), yaml: format!("{spec:#?}") },
    };
    let failed = |why: String| SavedAnswers::Failed { why, yaml: body.clone() };
    let text = format!(
        "# Answers to `kubeless-trigger new`, saved when it stopped before writing.\n\
         # `kubeless-trigger new --spec <this file>` writes the repository from them.\n{body}"
    );
    for n in 1..100 {
        let name = if n == 1 {
            format!("{}-trigger.yaml", spec.source)
        } else {
            format!("{}-trigger-{n}.yaml", spec.source)
        };
        let path = PathBuf::from(".").join(name);
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                return match file.write_all(text.as_bytes()).and_then(|()| file.sync_all()) {
                    Ok(()) => SavedAnswers::At { path, output: output.map(|o| o.to_owned()) },
                    Err(e) => {
                        let _ = fs::remove_file(&path);
                        failed(format!("{}: {e}", path.display()))
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return failed(format!("{}: {e}", path.display())),
        }
    }
    failed("./<source>-trigger.yaml to -99.yaml all exist".into())
}

/// Why the interview stopped without a spec.
enum Stop {
    /// The user chose to cancel at the summary.
    Declined,
    /// Ctrl-C at a prompt.
    Interrupted,
    /// Ctrl-D at a prompt.
    EndOfInput,
    Failed(CliError),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        match e.kind() {
            io::ErrorKind::Interrupted => Stop::Interrupted,
            io::ErrorKind::UnexpectedEof => Stop::EndOfInput,
            _ => Stop::Failed(CliError::Prompt(e)),
        }
    }
}

/// The answers so far, and how to ask.
struct Session<'a> {
    theme: &'a dyn Theme,
    spec: Spec,
    options: &'a Options,
    /// The field being edited at the summary: answers are checked with it replaced.
    editing: Option<usize>,
}

/// The actions at the summary.
#[derive(Clone, Copy, PartialEq)]
enum Action {
    Write,
    Edit,
    Add,
    Remove,
    Names,
    /// Drop the built-in source (`builtIn: false`) the fields do not fit.
    Skeleton,
    Cancel,
}

impl Session<'_> {
    fn interview(&mut self) -> Result<Spec, Stop> {
        self.ask_source()?;
        self.check_output()?;
        self.ask_names(false)?;
        self.keep_preset_fields()?;
        self.add_fields()?;
        self.review()
    }

    fn output(&self) -> PathBuf {
        self.options.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}-trigger", self.spec.source)))
    }

    /// An output directory that `new` would refuse is reported before the
    /// questions, not after the last one.
    fn check_output(&self) -> Result<(), Stop> {
        if self.options.print {
            return Ok(());
        }
        apply::precheck(&self.output(), self.options.force).map_err(|e| Stop::Failed(e.into()))
    }

    fn ask_source(&mut self) -> Result<(), Stop> {
        let Err(why) = spec::validate::check_dns_label(&self.spec.source) else { return Ok(()) };
        if !self.spec.source.is_empty() {
            self.error(&why);
        }
        self.spec.source = self.ask_text(
            "Event source name (e.g. nats, kafka, mqtt)",
            "",
            None,
            spec::validate::check_dns_label,
        )?;
        if let Some(preset) = sources::preset(&self.spec.source).filter(|_| self.spec.fields.is_empty()) {
            self.spec.fields = preset.fields;
            self.spec.description = preset.description;
            self.spec.association = preset.association;
        }
        Ok(())
    }

    /// Kind, group, version, association and CI; with `all`, also those a
    /// flag answered (the summary's "change the names").
    fn ask_names(&mut self, all: bool) -> Result<(), Stop> {
        let ask = |key: &str| all || !self.options.answered.contains(&key);
        let derived = Names::derive(&Spec { kind: None, ..self.spec.clone() });
        if ask("kind") {
            self.help("the custom resource's kind, PascalCase; its plural and CRD name follow from it");
            let current = self.spec.kind.clone().unwrap_or(derived.kind.clone());
            let kind = self.ask_text("Kind", "", Some(&current), spec::validate::check_kind)?;
            self.spec.kind = (kind != derived.kind).then_some(kind);
        }
        if ask("group") {
            let current = Names::derive(&self.spec).group;
            let group = self.ask_text("API group", "", Some(&current), spec::validate::check_group)?;
            self.spec.group = (group != crate::names::DEFAULT_GROUP).then_some(group);
        }
        if ask("version") {
            let current = Names::derive(&self.spec).version;
            let version = self.ask_text("API version", "", Some(&current), spec::validate::check_version)?;
            self.spec.version = (version != crate::names::DEFAULT_VERSION).then_some(version);
        }
        if ask("association") {
            self.help("the trigger object names its functions by labels (many) or by name (one)");
            let choice = self.select(
                "How does a trigger name its functions?",
                &[
                    "functionSelector: labels pick any number of functions (like Kafka, NATS)",
                    "functionName: one function, by name (like Kinesis, CronJob)",
                ],
                usize::from(self.spec.association == Association::Function),
            )?;
            self.spec.association = Association::ALL[choice];
        }
        if ask("ci") {
            let choices = [Ci::Both, Ci::Github, Ci::Travis];
            let current = self.spec.ci.unwrap_or_default();
            let choice = self.select(
                "CI files",
                &[
                    "both: GitHub Actions and Travis CI",
                    "github: GitHub Actions only",
                    "travis: Travis CI only (the Kubeless guide's)",
                ],
                choices.iter().position(|c| *c == current).unwrap_or(0),
            )?;
            self.spec.ci = (choices[choice] != Ci::default()).then_some(choices[choice]);
        }
        // Asked from the summary only (or when a flag's value was refused):
        // most users keep the derived names.
        if all {
            let current = Names::derive(&self.spec).image;
            let image = self.ask_text("Controller image (repository, no tag)", "", Some(&current), |s| {
                spec::validate::check_image(s)
            })?;
            self.spec.image =
                (image != Names::derive(&Spec { image: None, ..self.spec.clone() }).image).then_some(image);
            let current = Names::derive(&self.spec).crate_name;
            let name =
                self.ask_text("Cargo package name", "", Some(&current), spec::validate::check_crate_name)?;
            self.spec.crate_name = (name
                != Names::derive(&Spec { crate_name: None, ..self.spec.clone() }).crate_name)
                .then_some(name);
        }
        Ok(())
    }

    /// A preset's fields: all of them, one by one, or none.
    fn keep_preset_fields(&mut self) -> Result<(), Stop> {
        if self.spec.fields.is_empty() {
            return Ok(());
        }
        crate::talk!("Fields from the {} preset:", self.spec.source);
        for field in &self.spec.fields {
            crate::talk!("  {}", field_line(field));
        }
        let choice = self.select("Keep these fields?", &["all of them", "choose one by one", "none"], 0)?;
        match choice {
            0 => {}
            1 => {
                // Decided first, dropped after: stopped half-way, the saved
                // answers still hold every field not yet decided.
                let mut keep = Vec::new();
                for field in &self.spec.fields {
                    keep.push(self.confirm(&format!("Keep {}?", field_short(field)), true)?);
                }
                let mut decisions = keep.into_iter();
                self.spec.fields.retain(|_| decisions.next().unwrap_or(true));
            }
            _ => self.spec.fields.clear(),
        }
        Ok(())
    }

    fn add_fields(&mut self) -> Result<(), Stop> {
        while self.confirm(
            if self.spec.fields.is_empty() { "Add a spec field?" } else { "Add another spec field?" },
            self.spec.fields.is_empty(),
        )? {
            let field = self.ask_field(self.spec.fields.len(), None)?;
            self.spec.fields.push(field);
        }
        Ok(())
    }

    /// The summary, its problems, and what to do next, until the user
    /// writes (or prints) or cancels.
    fn review(&mut self) -> Result<Spec, Stop> {
        loop {
            self.print_summary();
            let problems = spec::validate(&self.spec);
            if !problems.is_empty() {
                crate::talk!("Fix these before writing:");
                for p in &problems {
                    crate::talk!("  {}: {}", p.path, p.message);
                }
            }
            let write = if self.options.print { "Print the spec" } else { "Write the repository" };
            let mut actions = Vec::new();
            if problems.is_empty() {
                actions.push((Action::Write, write));
            }
            if !self.spec.fields.is_empty() {
                actions.push((Action::Edit, "Edit a field"));
            }
            actions.push((Action::Add, "Add a field"));
            if !self.spec.fields.is_empty() {
                actions.push((Action::Remove, "Remove a field"));
            }
            actions.push((Action::Names, "Change the names, association, CI, image or crate"));
            if !sources::problems(&self.spec).is_empty() {
                actions.push((Action::Skeleton, "Write src/event_source.rs yourself (builtIn: false)"));
            }
            actions.push((Action::Cancel, "Cancel (your answers are saved)"));
            let labels: Vec<&str> = actions.iter().map(|(_, label)| *label).collect();
            let choice = self.select("What now?", &labels, 0)?;
            match actions[choice].0 {
                Action::Write => return Ok(self.spec.clone()),
                Action::Edit => {
                    let i = self.pick_field("Edit which field?")?;
                    let existing = self.spec.fields[i].clone();
                    self.editing = Some(i);
                    let edited = self.ask_field(i, Some(&existing));
                    self.editing = None;
                    // Interrupted mid-edit, the field stays as it was (in the saved answers too).
                    self.spec.fields[i] = edited?;
                }
                Action::Add => {
                    let field = self.ask_field(self.spec.fields.len(), None)?;
                    self.spec.fields.push(field);
                }
                Action::Remove => {
                    let i = self.pick_field("Remove which field?")?;
                    self.spec.fields.remove(i);
                }
                Action::Names => self.ask_names(true)?,
                Action::Skeleton => self.spec.built_in = false,
                Action::Cancel => return Err(Stop::Declined),
            }
        }
    }

    fn pick_field(&self, prompt: &str) -> Result<usize, Stop> {
        let lines: Vec<String> = self.spec.fields.iter().map(field_short).collect();
        self.select(prompt, &lines, 0)
    }

    fn print_summary(&self) {
        let names = Names::derive(&self.spec);
        crate::talk!("\nThe trigger, to be written to {}:", self.output().display());
        for (label, value) in names.rows() {
            crate::talk!("  {label:<12} {value}");
        }
        crate::talk!("  {:<12} {}", "association", self.spec.association.field_name());
        crate::talk!("  {:<12} {}", "ci", self.spec.ci.unwrap_or_default().as_str());
        crate::talk!("  fields:");
        for field in &self.spec.fields {
            crate::talk!("    {}", field_line(field));
            if let Some(d) = &field.description {
                crate::talk!("      {}", d.lines().next().unwrap_or_default());
            }
        }
        if self.spec.fields.is_empty() {
            crate::talk!("    (none)");
        }
    }

    /// One field, for position `index`: every answer checked as typed, the
    /// validation before the default, the default last. Editing starts from
    /// `existing`'s answers.
    fn ask_field(&self, index: usize, existing: Option<&Field>) -> Result<Field, Stop> {
        let was = |get: fn(&Field) -> Option<String>| existing.and_then(get).unwrap_or_default();
        let mut field = Field::new("", FieldType::String);
        field.name = self.ask_text(
            "Field name (lowerCamelCase JSON name)",
            &was(|f| Some(f.name.clone())),
            None,
            |s| {
                if self.other_fields(index).any(|f| f.name == s) {
                    return Err(format!("a field named {s:?} already exists"));
                }
                // A Rust name problem is answered by the next question, not here.
                self.problems(index, &Field { name: s.to_owned(), ..field.clone() }, &["name"])
            },
        )?;
        // A renamed field's Rust name was chosen for its old name.
        field.rust_name = existing.filter(|f| f.name == field.name).and_then(|f| f.rust_name.clone());
        if let Some(why) = self.rust_name_problem(index, &field) {
            self.error(&why);
            let suggested = format!("{}_value", crate::names::rust_field_name(&field.name));
            let initial = field.rust_name.clone().unwrap_or(suggested);
            let rust = self.ask_text("Rust field name (snake_case)", &initial, None, |s| {
                spec::validate::check_rust_ident(s)?;
                let trial = Field { rust_name: Some(s.to_owned()), ..field.clone() };
                match self.rust_name_problem(index, &trial) {
                    Some(why) => Err(why),
                    None => Ok(()),
                }
            })?;
            field.rust_name = Some(rust);
        }

        let current = existing.map_or(0, |f| TYPE_HELP.iter().position(|(t, _)| *t == f.ty).unwrap_or(0));
        let types: Vec<String> =
            TYPE_HELP.iter().map(|(t, what)| format!("{:<12} {what}", t.as_str())).collect();
        field.ty = TYPE_HELP[self.select("Type", &types, current)?].0;
        match field.ty {
            FieldType::List => {
                let items: Vec<&str> = ScalarType::ALL.iter().map(|t| t.as_str()).collect();
                let current = existing
                    .and_then(|f| f.items)
                    .and_then(|i| ScalarType::ALL.iter().position(|t| *t == i))
                    .unwrap_or(0);
                field.items = Some(ScalarType::ALL[self.select("Item type", &items, current)?]);
            }
            FieldType::Enum => {
                let answer = self.ask_text(
                    "Values (comma-separated)",
                    &was(|f| Some(f.values.join(", "))),
                    None,
                    |s| {
                        let trial = Field { values: split_list(s), ..field.clone() };
                        self.problems(index, &trial, &["values"])
                    },
                )?;
                field.values = split_list(&answer);
            }
            _ => {}
        }
        field.required = self.confirm("Required?", existing.is_some_and(|f| f.required))?;
        // A description can be long: shown, not put back on the input line,
        // where it would wrap and leave stale lines on a narrow terminal.
        field.description = match existing.and_then(|f| f.description.clone()) {
            Some(current) => {
                self.help(&format!("description now: {current}"));
                let answer = self.ask_optional("Description (empty keeps it, - removes it)", "", |s| {
                    if s == "-" {
                        return Ok(());
                    }
                    self.problems(
                        index,
                        &Field { description: Some(s.to_owned()), ..field.clone() },
                        &["description"],
                    )
                })?;
                match answer.as_deref() {
                    None => Some(current),
                    Some("-") => None,
                    Some(text) => Some(text.to_owned()),
                }
            }
            None => self.ask_optional("Description", "", |s| {
                let trial = Field { description: Some(s.to_owned()), ..field.clone() };
                self.problems(index, &trial, &["description"])
            })?,
        };

        if field.ty.has_length() {
            field.pattern =
                self.ask_optional("Pattern (regular expression)", &was(|f| f.pattern.clone()), |s| {
                    let trial = Field { pattern: Some(s.to_owned()), ..field.clone() };
                    self.problems(index, &trial, &["pattern"])
                })?;
            for (key, label) in [("minLength", "Minimum length"), ("maxLength", "Maximum length")] {
                let was_n =
                    existing.and_then(|f| if key == "minLength" { f.min_length } else { f.max_length });
                let value =
                    self.ask_optional(label, &was_n.map(|n| n.to_string()).unwrap_or_default(), |s| {
                        let n: u64 = s.parse().map_err(|_| format!("{s:?} is not a whole number"))?;
                        let mut trial = field.clone();
                        set_length(&mut trial, key, n);
                        self.problems(index, &trial, &["minLength", "maxLength"])
                    })?;
                if let Some(n) = value.and_then(|v| v.parse().ok()) {
                    set_length(&mut field, key, n);
                }
            }
        }
        if field.ty.has_range() {
            for (key, label) in [("minimum", "Minimum"), ("maximum", "Maximum")] {
                let was_n = existing
                    .and_then(|f| if key == "minimum" { f.minimum.clone() } else { f.maximum.clone() });
                let value =
                    self.ask_optional(label, &was_n.map(|n| n.to_string()).unwrap_or_default(), |s| {
                        let n = parse_number(s)?;
                        let mut trial = field.clone();
                        set_range(&mut trial, key, n);
                        self.problems(index, &trial, &["minimum", "maximum"])
                    })?;
                if let Some(n) = value.and_then(|v| parse_number(&v).ok()) {
                    set_range(&mut field, key, n);
                }
            }
        }
        if !field.required && field.ty.takes_default() {
            field.default = self.ask_default(index, &field, existing.and_then(|f| f.default.as_ref()))?;
        }
        // An example the validation no longer accepts is dropped; a required
        // field whose pattern no placeholder fits needs one.
        field.example = existing.and_then(|f| f.example.clone());
        if field.example.is_some() && self.problems(index, &field, &["example"]).is_err() {
            field.example = None;
        }
        if let Err(why) = self.problems(index, &field, &["example"]) {
            self.error(&why);
            let example = self.ask_text("Example value (for examples/trigger.yaml)", "", None, |s| {
                let trial = Field { example: Some(parse_value(&field, s)), ..field.clone() };
                self.problems(index, &trial, &["example"])
            })?;
            field.example = Some(parse_value(&field, &example));
        }
        Ok(field)
    }

    /// The default, asked last: checked against the type and every bound.
    fn ask_default(
        &self,
        index: usize,
        field: &Field,
        existing: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, Stop> {
        let choose = |options: Vec<String>| -> Result<Option<serde_json::Value>, Stop> {
            let current = existing
                .and_then(|d| {
                    options
                        .iter()
                        .position(|o| serde_json::Value::String(o.clone()) == *d || o == &d.to_string())
                })
                .map_or(0, |i| i + 1);
            let mut items = vec!["(none)".to_owned()];
            items.extend(options.iter().cloned());
            let choice = self.select("Default", &items, current)?;
            Ok((choice > 0).then(|| parse_value(field, &options[choice - 1])))
        };
        match field.ty {
            FieldType::Enum => choose(field.values.clone()),
            FieldType::Boolean => choose(vec!["true".into(), "false".into()]),
            _ => {
                let hint = match (field.ty, field.items) {
                    (FieldType::List, Some(items)) => {
                        format!("Default (comma-separated {}s)", items.as_str())
                    }
                    (FieldType::Map, _) => "Default (YAML map, e.g. {a: b})".to_owned(),
                    _ => "Default".to_owned(),
                };
                let was = existing.map(|d| default_text(field, d)).unwrap_or_default();
                let answer = self.ask_optional(&hint, &was, |s| {
                    let trial = Field { default: Some(parse_value(field, s)), ..field.clone() };
                    self.problems(index, &trial, &["default"])
                })?;
                Ok(answer.map(|s| parse_value(field, &s)))
            }
        }
    }

    /// Problems the spec would have with `field` at `index`, under the
    /// field's `keys`, as one message.
    fn problems(&self, index: usize, field: &Field, keys: &[&str]) -> Result<(), String> {
        let trial = self.with_field(index, field);
        let at = format!("fields[{index}]");
        let messages: Vec<String> = spec::validate(&trial)
            .into_iter()
            .filter(|p| {
                keys.iter().any(|k| {
                    let path = format!("{at}.{k}");
                    p.path == path || p.path.starts_with(&format!("{path}["))
                }) && !(keys.contains(&"name") && p.message.contains("rustName"))
            })
            .map(|p| p.message)
            .collect();
        if messages.is_empty() { Ok(()) } else { Err(messages.join("; ")) }
    }

    /// The spec with `field` at `index`: in place of the field being edited,
    /// or added there.
    fn with_field(&self, index: usize, field: &Field) -> Spec {
        let mut trial = self.spec.clone();
        match self.editing {
            Some(i) if i == index => trial.fields[i] = field.clone(),
            _ => trial.fields.insert(index.min(trial.fields.len()), field.clone()),
        }
        trial
    }

    /// The fields other than the one at `index` (being edited, or new).
    fn other_fields(&self, index: usize) -> impl Iterator<Item = &Field> {
        self.spec
            .fields
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.editing != Some(*i) || *i != index)
            .map(|(_, f)| f)
    }

    /// Why the field's Rust name is unusable (a keyword, or taken), if it is.
    fn rust_name_problem(&self, index: usize, field: &Field) -> Option<String> {
        let rust = |f: &Field| f.rust_name.clone().unwrap_or_else(|| crate::names::rust_field_name(&f.name));
        if let Some(other) = self.other_fields(index).find(|f| rust(f) == rust(field)) {
            return Some(format!(
                "its Rust name {:?} is the Rust name of field {:?}; choose another",
                rust(field),
                other.name
            ));
        }
        let trial = self.with_field(index, field);
        let at = format!("fields[{index}]");
        spec::validate(&trial)
            .into_iter()
            .find(|p| {
                p.path == format!("{at}.rustName")
                    || (p.path == format!("{at}.name") && p.message.contains("rustName"))
            })
            .map(|p| {
                p.message.replace("add `rustName`", "choose a Rust name").replace("`rustName`", "Rust name")
            })
    }

    /// A text answer, checked as typed; on a problem the reason is shown
    /// and the question asked again with the text as typed.
    fn ask_text(
        &self,
        prompt: &str,
        initial: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<String, Stop> {
        self.before_question();
        let mut typed = initial.to_owned();
        loop {
            let answer = ask::text(self.theme, prompt, default, &typed)?.trim().to_owned();
            let result =
                if answer.is_empty() { Err("an answer is required".to_owned()) } else { check(&answer) };
            match result {
                Ok(()) => return Ok(answer),
                Err(why) => {
                    self.error(&why);
                    typed = answer;
                }
            }
        }
    }

    /// An optional text answer: empty means "not set".
    fn ask_optional(
        &self,
        prompt: &str,
        initial: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Option<String>, Stop> {
        self.before_question();
        let mut typed = initial.to_owned();
        loop {
            let answer =
                ask::text(self.theme, &format!("{prompt} (empty for none)"), None, &typed)?.trim().to_owned();
            if answer.is_empty() {
                return Ok(None);
            }
            match check(&answer) {
                Ok(()) => return Ok(Some(answer)),
                Err(why) => {
                    self.error(&why);
                    typed = answer;
                }
            }
        }
    }

    /// Yes or no, answered with Enter: a `y` typed for one question is never
    /// taken with the Enter after it as the answer to the next.
    fn confirm(&self, prompt: &str, default: bool) -> Result<bool, Stop> {
        self.before_question();
        Ok(ask::confirm(self.theme, prompt, default)?)
    }

    /// One entry of a list.
    fn select<T: std::fmt::Display>(&self, prompt: &str, items: &[T], default: usize) -> Result<usize, Stop> {
        self.before_question();
        let items: Vec<String> = items.iter().map(ToString::to_string).collect();
        Ok(ask::select(self.theme, prompt, &items, default)?)
    }

    /// Publish the answers so far (for the signal thread), and drop what
    /// was typed ahead: no keystroke meant for one question answers the next.
    fn before_question(&self) {
        publish(&self.spec);
        #[cfg(unix)]
        // SAFETY: tcflush only discards the terminal's pending input; on a
        // descriptor that is not a terminal it fails harmlessly with ENOTTY.
        unsafe {
            libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH);
        }
    }

    fn error(&self, why: &str) {
        let mut line = String::new();
        let _ = self.theme.format_error(&mut line, why);
        crate::talk!("{line}");
    }

    fn help(&self, text: &str) {
        crate::talk!("  {text}");
    }
}

/// What each type is, for the type menu.
const TYPE_HELP: [(FieldType, &str); 9] = [
    (FieldType::String, "text; optional pattern and length"),
    (FieldType::Integer, "whole number (i64); optional minimum and maximum"),
    (FieldType::Number, "decimal number (f64); optional minimum and maximum"),
    (FieldType::Boolean, "true or false"),
    (FieldType::Enum, "one of a list of values you give"),
    (FieldType::List, "a list of strings, integers, numbers or booleans"),
    (FieldType::Map, "string keys to string values (like labels)"),
    (FieldType::Object, "free-form JSON, kept as is (like a payload)"),
    (FieldType::SecretKeyRef, "a key of a Secret in the trigger's namespace (credentials)"),
];

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `topic (string, required)`: short enough for a list entry on one line.
fn field_short(f: &Field) -> String {
    let required = if f.required { ", required" } else { "" };
    format!("{} ({}{required})", f.name, f.ty.as_str())
}

/// `topic (string, required, pattern ^a$, length 1..63, default x)`.
fn field_line(f: &Field) -> String {
    let mut parts = vec![match (f.ty, f.items) {
        (FieldType::List, Some(items)) => format!("list of {}", items.as_str()),
        (FieldType::Enum, _) => format!("enum [{}]", f.values.join(", ")),
        (ty, _) => ty.as_str().to_owned(),
    }];
    if f.required {
        parts.push("required".into());
    }
    if let Some(p) = &f.pattern {
        parts.push(format!("pattern {p}"));
    }
    if f.min_length.is_some() || f.max_length.is_some() {
        let bound = |b: Option<u64>| b.map(|n| n.to_string()).unwrap_or_default();
        parts.push(format!("length {}..{}", bound(f.min_length), bound(f.max_length)));
    }
    if f.minimum.is_some() || f.maximum.is_some() {
        let bound = |b: &Option<serde_json::Number>| b.as_ref().map(|n| n.to_string()).unwrap_or_default();
        parts.push(format!("range {}..{}", bound(&f.minimum), bound(&f.maximum)));
    }
    if let Some(d) = &f.default {
        parts.push(format!("default {d}"));
    }
    format!("{} ({})", f.name, parts.join(", "))
}

fn set_length(f: &mut Field, key: &str, n: u64) {
    if key == "minLength" { f.min_length = Some(n) } else { f.max_length = Some(n) }
}

/// A typed bound, exact when it is an integer (`9223372036854775807`).
fn parse_number(s: &str) -> Result<serde_json::Number, String> {
    match serde_json::from_str::<serde_json::Value>(s.trim()) {
        Ok(serde_json::Value::Number(n)) => Ok(n),
        _ => Err(format!("{s:?} is not a number")),
    }
}

fn set_range(f: &mut Field, key: &str, n: serde_json::Number) {
    if key == "minimum" { f.minimum = Some(n) } else { f.maximum = Some(n) }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
}

/// A value as typed: strings and enums as text; a list comma-separated (or
/// as a YAML list), like enum values; everything else as YAML.
fn parse_value(field: &Field, text: &str) -> serde_json::Value {
    let yaml =
        |t: &str| serde_saphyr::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_owned()));
    match field.ty {
        FieldType::String | FieldType::Enum => serde_json::Value::String(text.to_owned()),
        FieldType::List if !text.trim_start().starts_with('[') => serde_json::Value::Array(
            split_list(text)
                .iter()
                .map(|item| match field.items {
                    Some(ScalarType::String) | None => serde_json::Value::String(item.clone()),
                    Some(_) => yaml(item),
                })
                .collect(),
        ),
        _ => yaml(text),
    }
}

/// A default as the user would type it again.
fn default_text(field: &Field, value: &serde_json::Value) -> String {
    match (field.ty, value) {
        (_, serde_json::Value::String(s)) => s.clone(),
        (FieldType::List, serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_defaults_are_typed_like_enum_values() {
        let mut f = Field::new("ports", FieldType::List);
        f.items = Some(ScalarType::Integer);
        assert_eq!(parse_value(&f, "80, 443"), serde_json::json!([80, 443]));
        assert_eq!(parse_value(&f, "[80, 443]"), serde_json::json!([80, 443]));
        f.items = Some(ScalarType::String);
        assert_eq!(parse_value(&f, "a, b"), serde_json::json!(["a", "b"]));
        assert_eq!(default_text(&f, &serde_json::json!(["a", "b"])), "a, b");
    }

    #[test]
    fn a_field_line_shows_its_validation() {
        let mut f = Field::new("size", FieldType::Integer);
        f.required = true;
        f.minimum = Some(1.into());
        f.maximum = Some(10.into());
        assert_eq!(field_line(&f), "size (integer, required, range 1..10)");
    }
}
