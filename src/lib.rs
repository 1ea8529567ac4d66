//! `kubeless-trigger`: create complete repositories for Kubeless triggers.
//!
//! The pipeline, one module per step, data flowing one way:
//! `inputs`/`prompt` → `spec` → `names` → `model` → `render` (+ `crd`) → `plan` → `apply`.

/// `eprintln!` that cannot panic: when stderr is gone (closed, a full disk)
/// there is nobody left to tell, and that must not abort a write.
#[macro_export]
macro_rules! talk {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod apply;
pub mod ask;
pub mod cargo_lock;
pub mod check;
pub mod cli;
pub mod crd;
pub mod error;
pub mod guard;
pub mod inputs;
pub mod lock;
pub mod model;
pub mod names;
pub mod plan;
pub mod prompt;
pub mod provenance;
pub mod render;
pub mod render_inputs;
pub mod repofile;
pub mod runtime;
pub mod rustlit;
pub mod signals;
pub mod sources;
pub mod spec;
pub mod sync;
pub mod testhook;
