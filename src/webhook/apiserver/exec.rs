//! A kubeconfig user's exec plugin (`client.authentication.k8s.io`): the
//! command prints an ExecCredential whose token (or client certificate)
//! proves who we are. Run when the config is read, and again when the
//! apiserver answers 401 (the token expired).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The `exec` stanza of a kubeconfig user.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ExecConfig {
    pub command: String,
    #[serde(default, deserialize_with = "super::config::null_as_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "super::config::null_as_default")]
    pub env: Vec<EnvVar>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Refused when set (the plugin would want the cluster's details).
    #[serde(default)]
    pub provide_cluster_info: bool,
    /// The last token the plugin gave.
    #[serde(skip)]
    token: Arc<Mutex<Option<String>>>,
}

#[derive(Deserialize, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

fn default_api_version() -> String {
    "client.authentication.k8s.io/v1".into()
}

/// What the plugin printed (its `status`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    token: Option<String>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

#[derive(Deserialize)]
struct ExecCredential {
    #[serde(default)]
    status: Option<Credential>,
}

impl ExecConfig {
    /// A command given as a relative path (`./bin/helper`) is relative to
    /// the kubeconfig's directory, as kubectl has it; a bare name is looked
    /// up in `PATH`.
    pub fn resolve_command(&mut self, dir: &Path) {
        if self.command.contains('/') && Path::new(&self.command).is_relative() {
            self.command = dir.join(&self.command).display().to_string();
        }
    }

    /// Keeps the credential's token for the requests to come.
    pub fn remember(&self, credential: Credential) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = credential.token;
    }

    /// The token last given, if any.
    pub fn token(&self) -> Option<String> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Credential {
    /// The client certificate and key, when the plugin gave them.
    #[allow(clippy::type_complexity)]
    pub fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
        match (&self.client_certificate_data, &self.client_key_data) {
            (Some(cert), Some(key)) => super::config::pem_identity(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err("exec plugin: a client certificate without its key, or the reverse".into()),
        }
    }
}

/// A plugin that has not answered by then is killed: it would otherwise
/// hold a thread (and its process) for good, once per renewal.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The most a plugin may print (a credential is a few KiB).
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs the plugin (blocking: call it off the async threads) and reads
/// its credential. Its stderr goes to ours: plugins prompt or explain there.
pub fn run(exec: &ExecConfig) -> Result<Credential, String> {
    run_within(exec, TIMEOUT)
}

fn run_within(exec: &ExecConfig, timeout: Duration) -> Result<Credential, String> {
    let name = &exec.command;
    let info = serde_json::json!({
        "apiVersion": exec.api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    let mut child = Command::new(name)
        .args(&exec.args)
        .envs(exec.env.iter().map(|e| (&e.name, &e.value)))
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("exec plugin {name:?}: {e}"))?;
    // Read while waiting, so a plugin that prints more than a pipe holds
    // does not block on us.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(MAX_OUTPUT).read_to_end(&mut out);
        }
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "exec plugin {name:?}: no answer within {} s; killed",
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(format!("exec plugin {name:?}: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("exec plugin {name:?} failed: {status}"));
    }
    parse(&out).map_err(|e| format!("exec plugin {name:?}: {e}"))
}

fn parse(stdout: &[u8]) -> Result<Credential, String> {
    let credential: ExecCredential =
        serde_json::from_slice(stdout).map_err(|e| format!("not an ExecCredential: {e}"))?;
    let status = credential
        .status
        .ok_or("an ExecCredential without status")?;
    if status.token.is_none() && status.client_certificate_data.is_none() {
        return Err("an ExecCredential with neither token nor client certificate".into());
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_that_does_not_answer_is_killed() {
        let exec: ExecConfig = serde_json::from_str(
            r#"{"command":"sh","args":["-c","echo $$ > \"$0\"; exec sleep 30","PIDFILE"]}"#,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("exec-timeout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let mut exec = exec;
        exec.args[2] = pidfile.display().to_string();
        let start = Instant::now();
        let e = run_within(&exec, Duration::from_millis(500)).err().unwrap();
        assert!(e.contains("killed"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the plugin still runs"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_token_or_a_certificate_is_read_and_anything_else_is_an_error() {
        let c = parse(br#"{"kind":"ExecCredential","status":{"token":"t0k"}}"#).unwrap();
        assert_eq!(c.token.as_deref(), Some("t0k"));
        for bad in [&b"{}"[..], br#"{"status":{}}"#, b"token"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
