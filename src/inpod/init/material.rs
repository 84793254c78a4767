//! `init`'s work: put the binary where the other containers can run it, and
//! give the pod its own Docker TLS material.
//!
//! The layout is the one `dockerd-entrypoint.sh` treats as user-managed
//! (`server/{ca,cert,key}.pem`, `client/{ca,cert,key}.pem`), so the
//! entrypoint neither generates its three RSA-4096 keys nor races the runner
//! for `client/ca.pem`. Keys are ECDSA P-256 (milliseconds, not seconds).
//! The CA key lives only in this process's memory: nobody can mint more
//! certificates for this pod's daemon afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::inpod::rundir::write_atomic;

/// DNS names and addresses the daemon's certificate is valid for: the
/// runner reaches it as `localhost`, a job container as `docker`.
pub const SERVER_DNS_NAMES: &[&str] = &["localhost", "docker"];
pub const SERVER_IPS: &[std::net::IpAddr] = &[
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];
/// Validity of the per-pod certificates. A runner pod of a ReplicaSet may
/// live for months; the material dies with the pod anyway.
pub const VALIDITY_DAYS: i64 = 3 * 365;

/// Name of the copied executable inside the bin directory.
pub const BINARY_NAME: &str = "dind-injector";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot find this program's own executable: {0}")]
    CurrentExe(std::io::Error),
    #[error("cannot copy {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Mkdir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::inpod::rundir::Error),
}

/// What [`ensure_tls`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOutcome {
    /// Complete, valid material was already there (a restarted init container).
    Kept,
    Generated,
}

/// Copies the running executable to `bin_dir/dind-injector`, mode 0555,
/// atomically (a half-copied binary must never be executable under its name).
pub fn install_binary(bin_dir: &Path) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
    std::fs::create_dir_all(bin_dir).map_err(|source| Error::Mkdir {
        path: bin_dir.to_path_buf(),
        source,
    })?;
    let target = bin_dir.join(BINARY_NAME);
    let tmp = bin_dir.join(format!(".{BINARY_NAME}.tmp.{}", std::process::id()));
    let copy = (|| {
        std::fs::copy(&exe, &tmp)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(source) = copy {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Copy {
            from: exe,
            to: target,
            source,
        });
    }
    Ok(target)
}

/// Writes the pod's TLS material below `certs_dir`, unless a complete and
/// valid set is already there. A partial or invalid set (an init container
/// killed half-way) is replaced as a whole, never patched file by file.
pub fn ensure_tls(certs_dir: &Path) -> Result<TlsOutcome, Error> {
    if existing_material_is_valid(certs_dir) {
        return Ok(TlsOutcome::Kept);
    }
    let material = generate()?;
    for dir in ["server", "client"] {
        let path = certs_dir.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| Error::Mkdir {
            path: path.clone(),
            source,
        })?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
    }
    // Keys and certificates first, the CA files last: a reader that sees
    // ca.pem sees the rest. The server key is for the daemon (root) only;
    // the client key must be readable by the runner's user, whatever it is
    // (the volume is private to the pod).
    let files: [(&str, &str, u32); 6] = [
        ("server/key.pem", &material.server_key, 0o600),
        ("server/cert.pem", &material.server_cert, 0o644),
        ("client/key.pem", &material.client_key, 0o644),
        ("client/cert.pem", &material.client_cert, 0o644),
        ("server/ca.pem", &material.ca_cert, 0o644),
        ("client/ca.pem", &material.ca_cert, 0o644),
    ];
    for (name, contents, mode) in files {
        write_atomic(&certs_dir.join(name), contents.as_bytes(), mode)?;
    }
    Ok(TlsOutcome::Generated)
}

/// PEM text of one pod's material. The CA key is not in it.
pub struct Material {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn generate() -> Result<Material, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    // An hour back for clock skew between nodes and whatever checks the cert.
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(VALIDITY_DAYS);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("dind-injector pod CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut server = CertificateParams::default();
    server.distinguished_name = name("docker");
    server.subject_alt_names = SERVER_DNS_NAMES
        .iter()
        .map(|n| Ok(SanType::DnsName((*n).try_into()?)))
        .chain(SERVER_IPS.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = not_before;
    server.not_after = not_after;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut client = CertificateParams::default();
    client.distinguished_name = name("docker client");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.not_before = not_before;
    client.not_after = not_after;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    Ok(Material {
        ca_cert: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// All six files present, both CA files the same certificate, each key
/// matching its certificate, the server certificate valid now for every
/// name the runner or a job container uses, the client certificate valid
/// now for client authentication.
pub fn existing_material_is_valid(certs_dir: &Path) -> bool {
    check_existing(certs_dir).is_ok()
}

fn check_existing(certs_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let provider = crate::crypto::provider();
    let read_cert = |p: &str| CertificateDer::from_pem_file(certs_dir.join(p));
    let read_key = |p: &str| PrivateKeyDer::from_pem_file(certs_dir.join(p));
    let ca = read_cert("server/ca.pem")?;
    if read_cert("client/ca.pem")? != ca {
        return Err("server/ca.pem and client/ca.pem differ".into());
    }
    let server_cert = read_cert("server/cert.pem")?;
    let client_cert = read_cert("client/cert.pem")?;
    let server = rustls::sign::CertifiedKey::from_der(
        vec![server_cert.clone()],
        read_key("server/key.pem")?,
        &provider,
    )?;
    server.keys_match()?;
    let client = rustls::sign::CertifiedKey::from_der(
        vec![client_cert.clone()],
        read_key("client/key.pem")?,
        &provider,
    )?;
    client.keys_match()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let roots = Arc::new(roots);
    let now = UnixTime::now();
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()?;
    let names = SERVER_DNS_NAMES
        .iter()
        .map(|n| ServerName::try_from(*n).map(|n| n.to_owned()))
        .chain(
            SERVER_IPS
                .iter()
                .map(|ip| Ok(ServerName::IpAddress((*ip).into()))),
        );
    for name in names {
        server_verifier.verify_server_cert(&server_cert, &[], &name?, &[], now)?;
    }
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider).build()?;
    client_verifier.verify_client_cert(&client_cert, &[], now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("init-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_material_is_valid_and_kept_on_second_run() {
        let dir = temp("idem");
        assert_eq!(ensure_tls(&dir).unwrap(), TlsOutcome::Generated);
        let first = std::fs::read(dir.join("server/cert.pem")).unwrap();
        assert_eq!(ensure_tls(&dir).unwrap(), TlsOutcome::Kept);
        assert_eq!(std::fs::read(dir.join("server/cert.pem")).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn partial_material_is_replaced_as_a_whole() {
        let dir = temp("partial");
        ensure_tls(&dir).unwrap();
        let old_ca = std::fs::read(dir.join("client/ca.pem")).unwrap();
        std::fs::remove_file(dir.join("client/key.pem")).unwrap();
        assert_eq!(ensure_tls(&dir).unwrap(), TlsOutcome::Generated);
        assert_ne!(std::fs::read(dir.join("client/ca.pem")).unwrap(), old_ca);
        assert!(existing_material_is_valid(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_from_another_pod_is_not_valid() {
        let a = temp("a");
        let b = temp("b");
        ensure_tls(&a).unwrap();
        ensure_tls(&b).unwrap();
        std::fs::copy(b.join("server/key.pem"), a.join("server/key.pem")).unwrap();
        assert!(!existing_material_is_valid(&a));
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}
