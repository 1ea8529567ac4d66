//! The `kubeless-trigger` command: parse the command line, run the pipeline,
//! map errors to exit codes.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kubeless_trigger::check::LockState;
use kubeless_trigger::cli::{Cli, Command, Format, NewArgs, RepoArgs};
use kubeless_trigger::error::{CliError, EXIT_OK, EXIT_USAGE};
use kubeless_trigger::guard::RepoGuard;
use kubeless_trigger::sync::Mode;
use kubeless_trigger::{apply, check, inputs, prompt, render, repofile, signals, sources, spec, sync};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    if let Err(e) = signals::install() {
        say(&format!(
            "warning: cannot handle SIGINT/SIGTERM ({e}); an interrupted write may leave files behind"
        ));
    }
    let result = run(cli);
    if let Some(signal) = signals::pending() {
        // Arrived after the last write was checked: the work is complete.
        if result.is_ok() {
            say(&format!("interrupted by {} after every change was written", signals::name(signal)));
            return ExitCode::from(signals::exit_code(signal));
        }
    }
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e @ CliError::Declined(_)) => {
            say(&e.to_string());
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            let text = e.to_string();
            say(&format!("error: {}", text.trim_end()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Print what clap has to say and pick the exit status: `--help` and
/// `--version` are data on stdout (0, or 1 when it cannot be written, as
/// for every other command); a usage error is talk on stderr (2).
fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::from(EXIT_USAGE);
    }
    match e.print() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            let e = CliError::Output(e);
            say(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
        _ => ExitCode::from(EXIT_OK),
    }
}

/// Write data to stdout. A reader that went away (`| head`) is not an
/// error: the command goes on as if its output had been read, and exits
/// with the status it would have had. Any other failure (a full disk) is.
fn emit(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// Talk to the person on stderr. If stderr itself is gone there is nobody
/// to tell, and that must not turn into a panic.
fn say(line: &str) {
    kubeless_trigger::talk!("{line}");
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::New(args) => new(&args)?,
        Command::Generate(repo) => sync(&repo, Mode::Generate)?,
        Command::Update(repo) => sync(&repo, Mode::Update)?,
        Command::Check { dir, format, full: _ } => check(&dir, format)?,
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&spec::Spec::json_schema()).expect("schema serializes");
            emit(&format!("{schema}\n"))?;
        }
        Command::Presets => {
            let list: String =
                sources::all().iter().map(|s| format!("{:<10} {}\n", s.name, s.summary())).collect();
            emit(&list)?;
        }
        Command::Man { command } => {
            let cli = Cli::command();
            let page = match command {
                None => cli,
                Some(name) => cli
                    .get_subcommands()
                    .find(|c| c.get_name() == name)
                    .map(|c| c.clone().name(format!("kubeless-trigger-{name}")))
                    .ok_or_else(|| {
                        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                        CliError::Usage(format!("no command {name:?}; the commands are {}", names.join(", ")))
                    })?,
            };
            let mut roff = Vec::new();
            clap_mangen::Man::new(page).render(&mut roff).map_err(CliError::Output)?;
            emit(&String::from_utf8_lossy(&roff))?;
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubeless-trigger", &mut script);
            emit(&String::from_utf8_lossy(&script))?;
        }
    }
    Ok(())
}

/// A generated repository: its spec and its lock.
struct Repo {
    spec: spec::Spec,
    lock: LockState,
}

fn open(dir: &Path) -> Result<Repo, CliError> {
    let spec = open_spec(dir)?;
    let lock = LockState::read(dir)?;
    Ok(Repo { spec, lock })
}

/// The repository's spec, or why `dir` is not a repository.
fn open_spec(dir: &Path) -> Result<spec::Spec, CliError> {
    let path = dir.join(render::SPEC_FILE);
    let not_a_repo = |why: String| {
        CliError::Usage(format!(
            "{} is not a kubeless-trigger repository: cannot read {}: {why}",
            dir.display(),
            path.display()
        ))
    };
    let text = match repofile::read_in(dir, render::SPEC_FILE, repofile::SPEC_CAP) {
        Ok(Some(text)) => text,
        Ok(None) => return Err(not_a_repo("not found".into())),
        Err(repofile::ReadError::Io { source, .. }) => return Err(not_a_repo(source.to_string())),
        Err(refused) => return Err(refused.into()),
    };
    Ok(spec::from_text(&text, &path.display().to_string())?)
}

/// Lock `dir` against concurrent writers (`exclusive`) or only readers.
fn guard(dir: &Path, exclusive: bool) -> Result<RepoGuard, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is not a kubeless-trigger repository: not a directory",
            dir.display()
        )));
    }
    Ok(if exclusive { RepoGuard::exclusive(dir)? } else { RepoGuard::shared(dir)? })
}

fn check(dir: &Path, format: Format) -> Result<(), CliError> {
    let _guard = guard(dir, false)?;
    // Parsing the lock (its merge bases are most of its bytes) and rendering
    // are independent: on two cores they overlap.
    let (spec, render, lock) = std::thread::scope(|scope| {
        let lock = scope.spawn(|| LockState::read(dir));
        let spec = open_spec(dir)?;
        let render = render::render(&spec)?;
        let lock = lock.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok::<_, CliError>((spec, render, lock))
    })?;
    let report = check::check(dir, &spec, &render, &lock)?;
    match format {
        Format::Text => emit(&report.text())?,
        Format::Json => emit(&format!("{}\n", report.json()))?,
    }
    if report.is_clean() { Ok(()) } else { Err(CliError::Drift) }
}

/// Read, plan and write under one exclusive guard, so no other run changes
/// the files between the plan and the writes; the table is printed only
/// once the writes succeeded, so it never reports changes that did not happen.
fn sync(args: &RepoArgs, mode: Mode) -> Result<(), CliError> {
    let _guard = guard(&args.dir, !args.dry_run)?;
    let repo = open(&args.dir)?;
    if let LockState::Unreadable(e) = &repo.lock
        && mode == Mode::Update
    {
        return Err(CliError::Usage(format!(
            "{} cannot be read ({e}); `update` needs it as the merge base: run `kubeless-trigger generate` first",
            kubeless_trigger::lock::LOCK_FILE
        )));
    }
    let plan = sync::plan(&args.dir, &repo.spec, &render::render(&repo.spec)?, repo.lock.lock(), mode)?;
    if args.dry_run {
        emit(&plan.table(true))?;
        say("dry run: nothing written");
        return Ok(());
    }
    plan.apply(&args.dir)?;
    emit(&plan.table(false))?;
    let conflicts = plan.conflicts();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(CliError::Conflicts(conflicts.iter().map(|s| s.to_string()).collect()))
    }
}

fn new(args: &NewArgs) -> Result<(), CliError> {
    let resolved = inputs::resolve(args)?;
    if args.print_spec {
        return emit(&render::spec_yaml(&resolved.spec)?);
    }
    // Answers typed at the prompts are saved when the write fails.
    let keep_answers = |e: CliError| {
        if resolved.interactive {
            say(&prompt::save_answers(&resolved.spec, args.output.as_deref()).to_string());
        }
        e
    };
    let plan = render::repository(&resolved.spec).map_err(|e| keep_answers(e.into()))?;
    if args.dry_run {
        emit(&plan.table())?;
        say(&format!(
            "dry run: {} files for {}; nothing written",
            plan.files.len(),
            resolved.output.display()
        ));
        return Ok(());
    }
    apply::write(&plan, &resolved.output, args.force).map_err(|e| keep_answers(e.into()))?;
    emit(&plan.table())?;
    let out = resolved.output.display();
    say(&format!("wrote {} files to {out}", plan.files.len()));
    if sources::built_in(&resolved.spec).is_some() {
        say(&format!("next: cd {out} && cargo test"));
    } else {
        say(&format!(
            "next: write the event source in {out}/src/event_source.rs (a skeleton that consumes nothing yet), then cd {out} && cargo test"
        ));
    }
    Ok(())
}
