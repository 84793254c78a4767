//! The one place with `unsafe` (Linux x86_64/aarch64 system calls): a `pre_exec` hook that gives the child
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
    // SAFETY: the closure runs in the forked child before execve. It makes
    // only raw rt_sigprocmask and rt_sigaction system calls (async-signal-
    // safe), allocates nothing, takes no lock and captures nothing. The raw
    // calls, unlike glibc's wrappers, also reach the real-time signals libc
    // reserves for itself. An all-zero kernel `struct sigaction` is SIG_DFL
    // with no flags and an empty mask, whatever the struct's field order.
    // Errors (SIGKILL and SIGSTOP cannot be changed) are ignored on purpose.
    unsafe {
        cmd.pre_exec(|| {
            let empty: u64 = 0;
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &empty as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            );
            let default_action = [0u64; 4];
            for sig in 1..=64 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
            Ok(())
        });
    }
}
