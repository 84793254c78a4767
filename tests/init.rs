//! `dind-injector init` as the real binary: the files, their modes, what
//! the certificates are valid for, and a second run that keeps them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{bin, temp_dir};

fn init(dir: &Path) {
    let out = Command::new(bin())
        .arg("init")
        .arg(format!("--bin-dir={}", dir.join("bin").display()))
        .arg(format!("--certs-dir={}", dir.join("certs").display()))
        .output()
        .expect("run init");
    assert!(out.status.success(), "init failed: {out:?}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn writes_the_user_managed_layout_with_the_right_modes_and_no_ca_key() {
    let dir = temp_dir("init");
    init(&dir);
    let certs = dir.join("certs");
    let mut files: Vec<String> = ["server", "client"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(certs.join(d))
                .expect("read dir")
                .map(move |e| format!("{d}/{}", e.expect("entry").file_name().to_string_lossy()))
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "client/ca.pem",
            "client/cert.pem",
            "client/key.pem",
            "server/ca.pem",
            "server/cert.pem",
            "server/key.pem"
        ],
        "exactly the six files dockerd-entrypoint.sh expects: no CA key"
    );
    assert_eq!(mode(&dir.join("bin/dind-injector")), 0o555);
    assert_eq!(mode(&certs.join("server/key.pem")), 0o600);
    assert_eq!(
        mode(&certs.join("client/key.pem")),
        0o644,
        "the runner user reads it"
    );
    assert_eq!(mode(&certs.join("client/cert.pem")), 0o644);
    assert_eq!(
        std::fs::read(dir.join("bin/dind-injector")).expect("copy"),
        std::fs::read(bin()).expect("self"),
        "the copy is this binary"
    );

    let ca = certs.join("server/ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let server = certs.join("server/cert.pem");
    let client = certs.join("client/cert.pem");
    openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        ca,
        server.to_str().expect("utf-8"),
    ]);
    openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        ca,
        client.to_str().expect("utf-8"),
    ]);
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        server.to_str().expect("utf-8"),
    ]);
    assert!(
        text.contains(
            "DNS:localhost, DNS:docker, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"
        ),
        "SANs: {text}"
    );
    assert!(text.contains("ASN1 OID: prime256v1"), "ECDSA P-256: {text}");
    let key = openssl(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        certs.join("client/key.pem").to_str().expect("utf-8"),
    ]);
    assert!(key.contains("prime256v1"), "client key is ECDSA P-256");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_second_run_keeps_valid_material_and_replaces_a_broken_set() {
    let dir = temp_dir("init-twice");
    init(&dir);
    let snapshot = || -> Vec<Vec<u8>> {
        [
            "server/cert.pem",
            "server/key.pem",
            "client/cert.pem",
            "client/key.pem",
            "client/ca.pem",
        ]
        .iter()
        .map(|f| std::fs::read(dir.join("certs").join(f)).expect("read"))
        .collect()
    };
    let first = snapshot();
    init(&dir);
    let second = snapshot();
    assert_eq!(first, second, "valid material is kept as it is");

    std::fs::write(dir.join("certs/server/cert.pem"), "garbage").expect("break");
    init(&dir);
    let third = snapshot();
    assert_ne!(third[4], first[4], "a broken set is regenerated as a whole");
    assert_ne!(third[3], first[3]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
