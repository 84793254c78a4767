//! A kubeconfig user's exec plugin (`client.authentication.k8s.io`): the
//! command prints an ExecCredential whose token (or client certificate)
//! proves who we are. Run when the config is read, and again when the
//! apiserver answers 401 (the token expired).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The `exec` stanza of a kubeconfig user.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ExecConfig {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
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

/// Runs the plugin (blocking: call it off the async threads) and reads
/// its credential. Its stderr goes to ours: plugins prompt or explain there.
pub fn run(exec: &ExecConfig) -> Result<Credential, String> {
    let info = format!(
        r#"{{"apiVersion":"{}","kind":"ExecCredential","spec":{{"interactive":false}}}}"#,
        exec.api_version
    );
    let output = Command::new(&exec.command)
        .args(&exec.args)
        .envs(exec.env.iter().map(|e| (&e.name, &e.value)))
        .env("KUBERNETES_EXEC_INFO", info)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("exec plugin {:?}: {e}", exec.command))?;
    if !output.status.success() {
        return Err(format!(
            "exec plugin {:?} failed: {}",
            exec.command, output.status
        ));
    }
    parse(&output.stdout).map_err(|e| format!("exec plugin {:?}: {e}", exec.command))
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
    fn a_token_or_a_certificate_is_read_and_anything_else_is_an_error() {
        let c = parse(br#"{"kind":"ExecCredential","status":{"token":"t0k"}}"#).unwrap();
        assert_eq!(c.token.as_deref(), Some("t0k"));
        for bad in [&b"{}"[..], br#"{"status":{}}"#, b"token"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
