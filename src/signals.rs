//! SIGINT, SIGTERM and SIGHUP. Killed by default in the middle of a write, a
//! run left its staging directory behind and the repository half-written. So
//! a thread receives these signals: when no write is under way it exits at
//! once with 128 + the signal, as the default action would; during a write
//! (a [`Critical`] section) it only records the signal, and the writer
//! notices it between two steps, rolls back, cleans up and exits the same way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

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

/// Set when a prompt saw Ctrl-C itself (the terminal library turns it into
/// an error and a SIGINT): the prompts handle that SIGINT, not the thread.
static PROMPT_SAW_CTRL_C: AtomicBool = AtomicBool::new(false);

/// Say that the prompts handle the SIGINT of a Ctrl-C they saw.
pub fn prompt_saw_ctrl_c() {
    PROMPT_SAW_CTRL_C.store(true, Ordering::SeqCst);
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
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for signal in signals.forever() {
                let active = ACTIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *active == 0 {
                    if !run_prompt_hook(signal) {
                        continue;
                    }
                    std::process::exit(exit_code(signal).into());
                }
                PENDING.store(signal, Ordering::SeqCst);
            }
        })?;
    }
    Ok(())
}

/// Whether to exit on `signal`, after the prompt hook (if one is set) saved
/// the answers. A Ctrl-C typed at a prompt also reaches the prompt itself,
/// which saves them and says so: it gets a moment to do that first.
#[cfg(unix)]
fn run_prompt_hook(signal: i32) -> bool {
    let prompting = || PROMPT_HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some();
    if signal == signal_hook::consts::signal::SIGINT {
        if prompting() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if PROMPT_SAW_CTRL_C.swap(false, Ordering::SeqCst) {
            return false;
        }
    }
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
