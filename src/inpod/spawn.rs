//! Starting the wrapped command (the runner, or dockerd) and reading how it
//! ended, shared by `supervise` and `sidecar`.

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Pid, WaitStatus};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("no command given after `--`")]
    Empty,
    #[error("cannot run {program:?}: command not found")]
    NotFound { program: String },
    #[error("cannot run {program:?}: not executable ({source})")]
    NotExecutable {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot run {program:?}: {source}")]
    Other {
        program: String,
        source: std::io::Error,
    },
}

impl SpawnError {
    /// The shell's codes: 127 not found, 126 found but not runnable.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::Empty | SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } | SpawnError::Other { .. } => 126,
        }
    }
}

/// Starts `argv` with default signal dispositions and an empty signal mask,
/// in a new process group if `own_group`. Returns its PID. The child is
/// reaped by the caller with `waitpid`, not through `std::process::Child`.
pub fn spawn(argv: &[String], own_group: bool) -> Result<Pid, SpawnError> {
    let (program, args) = argv.split_first().ok_or(SpawnError::Empty)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    if own_group {
        cmd.process_group(0);
    }
    super::sigreset::reset_signals_on_exec(&mut cmd);
    let child = cmd.spawn().map_err(|source| {
        let program = program.clone();
        match source.kind() {
            std::io::ErrorKind::NotFound => SpawnError::NotFound { program },
            std::io::ErrorKind::PermissionDenied => SpawnError::NotExecutable { program, source },
            _ if source.raw_os_error() == Some(libc::ENOEXEC) => {
                SpawnError::NotExecutable { program, source }
            }
            _ => SpawnError::Other { program, source },
        }
    })?;
    let pid = Pid::from_raw(child.id() as i32).ok_or(SpawnError::Empty)?;
    // Dropping a Child neither kills nor waits: we reap it ourselves.
    drop(child);
    Ok(pid)
}

/// A shell-style exit code: the code, or 128 + the signal that killed it.
pub fn exit_code(status: WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        128 + sig
    } else {
        128
    }
}
