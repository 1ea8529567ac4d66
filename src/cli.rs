//! Command-line interface: the flags, and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::spec::{Association, Ci};

#[derive(Debug, Parser)]
#[command(
    name = "kubeless-trigger",
    version,
    about = "Create complete, working repositories for Kubeless triggers, in Rust",
    long_about = "Create complete, working repositories for Kubeless triggers, in Rust.\n\n\
        A trigger connects an event source (NATS, Kafka, Kinesis, ...) to Kubeless functions: a \
        custom resource describes the association and a controller delivers each event. \
        `kubeless-trigger new` writes the whole repository: the CRD, the Rust controller, \
        Dockerfile, Makefile, jsonnet manifest, bats tests and CI.",
    after_help = "Examples:\n  \
        kubeless-trigger new nats                      # ask, starting from the NATS preset\n  \
        kubeless-trigger new nats --defaults           # no questions: the preset as is\n  \
        kubeless-trigger new --spec trigger.yaml -o x  # scripted: the whole spec from a file\n  \
        kubeless-trigger new mqtt --dry-run            # list the files, write nothing\n  \
        kubeless-trigger check                         # in a generated repo: exit 1 on drift\n  \
        kubeless-trigger generate                      # after editing trigger.yaml\n  \
        kubeless-trigger update                        # after upgrading kubeless-trigger\n  \
        kubeless-trigger schema > trigger.schema.json  # JSON Schema for editors\n\n\
        Exit status: 0 success, 1 failure, 2 usage or input error, 130 interrupted (Ctrl-C).",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a trigger repository (interactive at a terminal, never otherwise)
    #[command(after_help = "Examples:\n  \
        kubeless-trigger new nats\n  \
        kubeless-trigger new kinesis --defaults -o ./kinesis-trigger\n  \
        kubeless-trigger new sqs --association function --no-input\n  \
        kubeless-trigger new --spec trigger.yaml --output ./my-trigger\n  \
        cat trigger.json | kubeless-trigger new --spec - --dry-run\n  \
        kubeless-trigger new nats --defaults --print-spec > trigger.yaml   # a starter spec\n\n\
        Without --spec, SOURCE picks a preset (see `kubeless-trigger presets`) or starts an\n\
        empty field list. Prompts appear only when stdin is a terminal and neither --spec,\n\
        --defaults nor --no-input is given; otherwise every missing or invalid input is\n\
        reported at once and the exit status is 2. A flag that sets a spec key skips its\n\
        question. At the prompts' summary you write, edit, add or remove fields, change the\n\
        names, or cancel; a run cancelled there (exit 0) or with Ctrl-C (exit 130), or whose\n\
        write fails, saves the answers as ./<SOURCE>-trigger.yaml for `new --spec`.")]
    New(NewArgs),
    /// Re-render from DIR/trigger.yaml: rewrite generated files, keep yours
    #[command(after_help = "Examples:\n  \
        kubeless-trigger generate              # in a generated repository\n  \
        kubeless-trigger generate ../nats-trigger --dry-run\n\n\
        Generated files that differ are rewritten and missing ones created; files that are\n\
        yours (README.md, src/event_source.rs, examples/) are never touched; generated files\n\
        the spec no longer produces are removed when they are unchanged since their last\n\
        render. Prints what changed.")]
    Generate(RepoArgs),
    /// Check that the generated files match DIR/trigger.yaml (for CI); writes nothing
    #[command(after_help = "Examples:\n  \
        kubeless-trigger check\n  \
        kubeless-trigger check path/to/repo --format json\n\n\
        Exit status: 0 when every generated file matches, 1 on drift (a unified diff per\n\
        file and a summary of missing, changed and unexpected files), 2 for usage or input errors.\n\n\
        The generated files are always compared with a fresh render of trigger.yaml, never\n\
        with the hashes in .kubeless-trigger.lock (which anyone can edit). `--full` is still\n\
        accepted for old scripts and does nothing.")]
    Check {
        /// The generated repository (the directory holding trigger.yaml)
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Accepted for compatibility and ignored: `check` always renders and compares
        #[arg(long, hide = true)]
        full: bool,
    },
    /// Bring a repository forward to this version's templates, merging your edits
    #[command(after_help = "Examples:\n  \
        kubeless-trigger update --dry-run      # the per-file plan first\n  \
        kubeless-trigger update\n\n\
        Generated files are rewritten. Your files that you never changed are replaced by the\n\
        new render; files both you and the templates changed are merged three-way against the\n\
        last render (recorded in .kubeless-trigger.lock). Conflicting hunks get conflict\n\
        markers, are listed, and the exit status is 1.")]
    Update(RepoArgs),
    /// Print the JSON Schema of the spec file (trigger.yaml)
    Schema,
    /// List the embedded presets
    Presets,
    /// Print the manual page (roff), of the tool or of one command
    #[command(after_help = "Examples:\n  \
        kubeless-trigger man > /usr/local/share/man/man1/kubeless-trigger.1\n  \
        kubeless-trigger man new > /usr/local/share/man/man1/kubeless-trigger-new.1")]
    Man {
        /// A command (`new`, `check`, ...): its own page
        command: Option<String>,
    },
    /// Print shell completions
    #[command(
        after_help = "Example:\n  kubeless-trigger completions bash > /etc/bash_completion.d/kubeless-trigger"
    )]
    Completions {
        /// Shell to generate completions for
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Event-source name, a DNS-1123 label (`nats`, `kafka`, `google-pubsub`)
    pub source: Option<String>,
    /// Read the whole spec from FILE (YAML or JSON; `-` for stdin); never prompts
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Output directory [default: ./<SOURCE>-trigger]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Custom resource kind [spec key: kind; default: derived, e.g. NATSTrigger]
    #[arg(long)]
    pub kind: Option<String>,
    /// API group [spec key: group; default: kubeless.io]
    #[arg(long)]
    pub group: Option<String>,
    /// API version [spec key: version; default: v1beta1]
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<String>,
    /// How triggers name their functions [spec key: association]
    #[arg(long, value_enum)]
    pub association: Option<AssociationArg>,
    /// CI files of the repository [spec key: ci; default: both]
    #[arg(long, value_enum)]
    pub ci: Option<CiArg>,
    /// Controller image repository, no tag [spec key: image]
    #[arg(long)]
    pub image: Option<String>,
    /// Cargo package name [spec key: crate; default: <SOURCE>-trigger]
    #[arg(long = "crate", value_name = "NAME")]
    pub crate_name: Option<String>,
    /// Accept every default without asking
    #[arg(long)]
    pub defaults: bool,
    /// Never prompt; fail with the list of what is missing instead
    #[arg(long)]
    pub no_input: bool,
    /// Write into an existing, non-empty output directory
    #[arg(long)]
    pub force: bool,
    /// Print the files that would be written (path, owner, size) and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the spec (YAML, as `--spec` reads it) that the answers or the preset give; write nothing
    #[arg(long, conflicts_with = "dry_run")]
    pub print_spec: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CiArg {
    /// GitHub Actions: .github/workflows/ci.yml
    Github,
    /// Travis CI: .travis.yml
    Travis,
    /// Both
    Both,
}

impl From<CiArg> for Ci {
    fn from(c: CiArg) -> Ci {
        match c {
            CiArg::Github => Ci::Github,
            CiArg::Travis => Ci::Travis,
            CiArg::Both => Ci::Both,
        }
    }
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The generated repository (the directory holding trigger.yaml)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Print the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AssociationArg {
    /// `functionSelector`: a label selector, one trigger to many functions
    Selector,
    /// `functionName`: exactly one function
    Function,
}

impl From<AssociationArg> for Association {
    fn from(a: AssociationArg) -> Association {
        match a {
            AssociationArg::Selector => Association::Selector,
            AssociationArg::Function => Association::Function,
        }
    }
}

/// The flag that sets a spec key, for error messages.
pub fn flag_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "source" => "SOURCE argument",
        "kind" => "--kind",
        "group" => "--group",
        "version" => "--api-version",
        "association" => "--association",
        "image" => "--image",
        "crate" => "--crate",
        "ci" => "--ci",
        _ => return None,
    })
}
