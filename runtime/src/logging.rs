//! Logs: human-readable text at a terminal, and without colour codes
//! anywhere else, so log files and `kubectl logs` stay greppable;
//! `LOG_FORMAT=json` gives one JSON object per line for log collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Text; coloured only when standard output is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub fn from_setting(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("LOG_FORMAT={other:?}: expected `text` or `json`")),
        }
    }
}

/// Install the global subscriber: `RUST_LOG` filters (default `info`),
/// `LOG_FORMAT` chooses the format.
pub fn init() -> Result<(), String> {
    let format = LogFormat::from_setting(std::env::var("LOG_FORMAT").ok().as_deref())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse() {
        assert_eq!(LogFormat::from_setting(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_setting(Some("json")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_setting(Some(" text ")), Ok(LogFormat::Text));
        assert!(LogFormat::from_setting(Some("xml")).unwrap_err().contains("LOG_FORMAT"));
    }
}
