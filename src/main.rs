//! The `kubeless-trigger` command: parse the command line, run the pipeline,
//! map errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kubeless_trigger::cli::{Cli, Command, NewArgs};
use kubeless_trigger::error::{CliError, EXIT_OK};
use kubeless_trigger::{apply, inputs, presets, render, spec};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let text = e.to_string();
            eprintln!("error: {}", text.trim_end());
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::New(args) => new(&args)?,
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&spec::Spec::json_schema()).expect("schema serializes");
            writeln!(out, "{schema}")?;
        }
        Command::Presets => {
            for p in presets::all() {
                writeln!(out, "{:<10} {}", p.name, p.summary())?;
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kubeless-trigger", &mut out);
        }
    }
    Ok(())
}

fn new(args: &NewArgs) -> Result<(), CliError> {
    let resolved = inputs::resolve(args)?;
    let plan = render::render(&resolved.spec)?;
    if args.dry_run {
        print!("{}", plan.table());
        eprintln!("dry run: {} files for {}; nothing written", plan.files.len(), resolved.output.display());
        return Ok(());
    }
    apply::write(&plan, &resolved.output, args.force)?;
    eprintln!("wrote {} files to {}", plan.files.len(), resolved.output.display());
    eprintln!("next: cd {} && cargo test", resolved.output.display());
    Ok(())
}
