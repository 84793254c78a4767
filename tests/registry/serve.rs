//! Debian's `docker-registry` as the registry tests (tests/registry.rs)
//! and the e2e suite (tests/e2e/pull_secrets.rs) run it: on 127.0.0.1, TLS
//! with a test CA's certificate, the access log on (the witness of what the
//! webhook asked), optionally basic auth from an htpasswd file; and the
//! test images pushed by push-images.py. One place, so both suites serve
//! the same registry the same way.

#![allow(dead_code)] // each suite uses a part of it

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The test user of the registry with basic auth, and its bcrypt hash
/// (`crypt.crypt('e2e-secret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`:
/// cost 4, so that each request does not spend a quarter second hashing).
pub const USER: &str = "ci";
pub const PASSWORD: &str = "e2e-secret";
const HTPASSWD: &str = "ci:$2b$04$rulZ1LLhE4WfUs/dLewyLeUxJXO0Fje/.fQeH1t03gOXxEeD1lv0a\n";

/// Writes the registry's configuration (and its htpasswd file with
/// `basic_auth`) into `dir`, storing under `dir/data`; the config's path,
/// for `docker-registry serve`. `tls`: certificate and key, or plain HTTP.
pub fn write_config(
    dir: &Path,
    port: u16,
    tls: Option<(&Path, &Path)>,
    basic_auth: bool,
) -> std::io::Result<PathBuf> {
    let auth = if basic_auth {
        std::fs::write(dir.join("htpasswd"), HTPASSWD)?;
        format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.join("htpasswd").display()
        )
    } else {
        String::new()
    };
    let tls = tls.map_or(String::new(), |(cert, key)| {
        format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        )
    });
    let config = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
        dir.join("data").display(),
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// `push-images.py` to `base` (`https://host:port`, or `http://` for a
/// registry without TLS): the test images, or with `user`
/// (`USER:PASSWORD`) the private image under each of `tags`.
pub fn push_command(
    root: &Path,
    base: &str,
    ca: &Path,
    user: Option<&str>,
    tags: &[&str],
) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("tests/registry/push-images.py"))
        .arg(base)
        .arg(ca);
    if let Some(user) = user {
        cmd.arg(user).args(tags);
    }
    cmd
}

/// Requests for `repo` in a registry's access log.
pub fn requests(log: &str, repo: &str) -> usize {
    let needle = format!("\"GET /v2/{repo}/");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// Waits until the registry accepts connections on 127.0.0.1:`port`, at
/// most `within`; `alive` says why not once the process has exited (then
/// there is no point waiting the rest).
pub fn wait_until_listening(
    port: u16,
    within: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "docker-registry did not listen on 127.0.0.1:{port} within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
