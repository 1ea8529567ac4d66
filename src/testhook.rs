//! Fault injection for the tests of all-or-nothing writes, in debug builds
//! only (release builds compile these to nothing). The failures they stand
//! for (a directory that turns read-only, a full disk, a signal at an exact
//! moment) cannot be produced reliably from a test running as root.
//!
//! `KUBELESS_TRIGGER_TEST_FAIL_AT=N` fails the write at step N and
//! `KUBELESS_TRIGGER_TEST_PAUSE_AT=N` pauses there (up to 30 s, until a
//! signal arrives); step 0 comes after staging, step N after the N-th move
//! into place.

use std::io;

/// Called by the writer at each step.
pub fn at(step: usize) -> io::Result<()> {
    #[cfg(debug_assertions)]
    {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
        if number("KUBELESS_TRIGGER_TEST_PAUSE_AT") == Some(step) {
            crate::talk!("test hook: paused at step {step}");
            let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while crate::signals::pending().is_none() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        if number("KUBELESS_TRIGGER_TEST_FAIL_AT") == Some(step) {
            return Err(io::Error::other(format!("test hook: injected failure at step {step}")));
        }
    }
    let _ = step;
    Ok(())
}
