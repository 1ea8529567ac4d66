//! The CLI's error type and its exit codes.

use crate::apply::ApplyError;
use crate::check::OpenLockError;
use crate::guard::GuardError;
use crate::render::RenderError;
use crate::repofile::ReadError;
use crate::spec::LoadError;

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for a failure (drift found, a write that failed).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage or input error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Input(#[from] LoadError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("prompt failed: {0}")]
    Prompt(std::io::Error),
    /// Ctrl-C at a prompt.
    #[error("cancelled; nothing was written; {0}")]
    Cancelled(crate::prompt::SavedAnswers),
    /// Ctrl-D at a prompt (or the terminal gone): the input ended before the answers did.
    #[error("the input ended (Ctrl-D, or the terminal closed); nothing was written; {0}")]
    EndOfInput(crate::prompt::SavedAnswers),
    /// "Cancel" at the summary: not an error (exit 0).
    #[error("not written; {0}")]
    Declined(crate::prompt::SavedAnswers),
    #[error("the generated files drifted from trigger.yaml")]
    Drift,
    #[error("{} file(s) have conflicts; resolve the markers, then commit:\n  {}", .0.len(), .0.join("\n  "))]
    Conflicts(Vec<String>),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Lock(#[from] OpenLockError),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Input(_) | CliError::Render(RenderError::CrdTooLarge { .. }) => {
                EXIT_USAGE
            }
            CliError::Apply(
                ApplyError::NotEmpty(_)
                | ApplyError::NotADirectory(_)
                | ApplyError::Conflict { .. }
                | ApplyError::UnsafePath { .. }
                | ApplyError::Guard(GuardError::Busy(_)),
            ) => EXIT_USAGE,
            CliError::Guard(GuardError::Busy(_)) => EXIT_USAGE,
            CliError::Apply(ApplyError::Interrupted(signal)) => crate::signals::exit_code(*signal),
            CliError::Cancelled(_) => EXIT_INTERRUPTED,
            CliError::Declined(_) => EXIT_OK,
            CliError::Read(e) | CliError::Apply(ApplyError::Read(e)) if e.is_refusal() => EXIT_USAGE,
            CliError::Lock(OpenLockError::Read(e)) if !e.is_refusal() => EXIT_FAILURE,
            CliError::Lock(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}
