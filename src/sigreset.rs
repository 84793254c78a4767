//! The one place with `unsafe`: a `pre_exec` hook that gives the child
//! default signal dispositions and an empty signal mask.
//!
//! `execve` keeps ignored signals ignored and keeps the signal mask. A
//! runner started with SIGINT ignored (a shell's background job, some CI
//! launchers) could then never be stopped with SIGINT: a shell cannot even
//! trap a signal that was ignored when it started. So the hook resets every
//! signal, whatever the supervisor inherited.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s child start with all signals at their default and none blocked.
pub fn reset_signals_on_exec(cmd: &mut Command) {
    // Computed before fork: SIGRTMAX() is a libc call, fine here.
    let max = libc::SIGRTMAX();
    // SAFETY: the closure runs in the forked child before execve. It calls
    // only sigemptyset, sigprocmask and signal, which are async-signal-safe
    // (POSIX), touches no lock, allocates nothing and captures one integer.
    // Errors (SIGKILL/SIGSTOP and the libc-reserved real-time signals cannot
    // be changed) are ignored on purpose.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for sig in 1..=max {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}
