//! SIGINT, SIGTERM and SIGHUP. Killed by default in the middle of a write, a
//! run left its staging directory behind and the repository half-written. So
//! a thread receives these signals: when no write is under way it exits at
//! once with 128 + the signal, as the default action would; during a write
//! (a [`Critical`] section) it only records the signal, and the writer
//! notices it between two steps, rolls back, cleans up and exits the same way.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How many critical sections are open; locked by the signal thread while it
/// decides, so a section cannot start between its check and its exit.
static ACTIVE: Mutex<usize> = Mutex::new(0);
/// The signal received during a critical section (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);
/// While the prompts run: called on the signal thread before it exits; it
/// saves the answers and returns whether the thread should exit (`false`:
/// the prompts already handle the signal themselves).
type PromptHook = Box<dyn Fn(i32) -> bool + Send>;
static PROMPT_HOOK: Mutex<Option<PromptHook>> = Mutex::new(None);

/// Whether the signal thread runs (`install` succeeded).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Set in the signal handler itself, at once: a SIGTERM or SIGHUP that
/// interrupts a prompt's read makes the terminal library raise a SIGINT,
/// which the signal thread may see first.
static TERM_SEEN: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static HUP_SEEN: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Whether signals reach the signal thread (and so the prompt hook).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Set (or clear) the hook the signal thread runs while the prompts run.
pub fn set_prompt_hook(hook: Option<PromptHook>) {
    *PROMPT_HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = hook;
}

/// Start receiving the signals. Without it (or if it fails) the default
/// actions apply, as before.
pub fn install() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
        let term = TERM_SEEN.get_or_init(|| Arc::new(AtomicBool::new(false)));
        signal_hook::flag::register(SIGTERM, Arc::clone(term))?;
        let hup = HUP_SEEN.get_or_init(|| Arc::new(AtomicBool::new(false)));
        signal_hook::flag::register(SIGHUP, Arc::clone(hup))?;
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for signal in signals.forever() {
                let active = ACTIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *active == 0 {
                    let signal = cause(signal);
                    if !run_prompt_hook(signal) {
                        continue;
                    }
                    std::process::exit(exit_code(signal).into());
                }
                PENDING.store(signal, Ordering::SeqCst);
            }
        })?;
        INSTALLED.store(true, Ordering::SeqCst);
    }
    Ok(())
}

/// The signal that started it: a SIGINT seen together with a SIGTERM or
/// SIGHUP was raised by the terminal library after that one.
#[cfg(unix)]
fn cause(signal: i32) -> i32 {
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
    let seen = |flag: &OnceLock<Arc<AtomicBool>>| flag.get().is_some_and(|f| f.load(Ordering::SeqCst));
    match signal {
        SIGINT if seen(&TERM_SEEN) => SIGTERM,
        SIGINT if seen(&HUP_SEEN) => SIGHUP,
        other => other,
    }
}

/// Whether to exit on `signal`, after the prompt hook (while the prompts
/// run) saved the answers. The prompts leave signals to this thread: a
/// Ctrl-C at a prompt is turned into a SIGINT by the terminal library.
#[cfg(unix)]
fn run_prompt_hook(signal: i32) -> bool {
    match PROMPT_HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
        Some(hook) => hook(signal),
        None => true,
    }
}

/// The signal received during a critical section, if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The conventional exit status for death by `signal`: 130 for SIGINT, 143
/// for SIGTERM.
pub fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

/// The signal's name, for messages.
pub fn name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// While one is alive, the signals above are deferred: see [`pending`].
#[must_use]
pub struct Critical(());

/// Enter a critical section.
pub fn critical() -> Critical {
    *ACTIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
    Critical(())
}

impl Drop for Critical {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *active = active.saturating_sub(1);
    }
}
