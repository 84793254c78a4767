//! The test cluster's own CA: serving certificates for the apiserver and the
//! second webhook, client certificates for the admin, the service-account
//! signing key. Generated fresh for every run (rcgen), never written outside
//! the run's directory.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// What a leaf certificate is for.
pub enum Usage<'a> {
    Server {
        sans: &'a [&'a str],
    },
    /// `organization` is the Kubernetes group (system:masters for the admin).
    Client {
        organization: &'a str,
    },
}

impl Ca {
    pub fn generate(name: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, common_name: &str, usage: Usage) -> Result<()> {
        let key = KeyPair::generate()?;
        let mut params = match usage {
            Usage::Server { sans } => {
                let mut p =
                    CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                p
            }
            Usage::Client { organization } => {
                let mut p = CertificateParams::new(Vec::<String>::new())?;
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p.distinguished_name = DistinguishedName::new();
                p.distinguished_name
                    .push(DnType::OrganizationName, organization);
                p
            }
        };
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer)?;
        write(&dir.join(format!("{stem}.crt")), &cert.pem())?;
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem())
    }
}

/// The service-account signing key pair (ES256): `sa.key` and `sa.pub`.
pub fn service_account_keys(dir: &Path) -> Result<()> {
    let key = KeyPair::generate()?;
    write(&dir.join("sa.key"), &key.serialize_pem())?;
    write(&dir.join("sa.pub"), &key.public_key_pem())
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
