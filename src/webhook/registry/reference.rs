//! An image reference as a registry client needs it: which host, which
//! repository, which tag or digest, with Docker Hub's defaults
//! (`ubuntu` is `registry-1.docker.io/library/ubuntu:latest`).

use std::fmt;

/// Docker Hub's API host, and the names it is known by in image
/// references and in Docker config files.
pub const DOCKER_HUB: &str = "registry-1.docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", DOCKER_HUB];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` of the registry's API.
    pub host: String,
    pub repository: String,
    /// A tag, or a digest (`sha256:…`).
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {image:?}: {problem}")]
pub struct BadReference {
    pub image: String,
    pub problem: &'static str,
}

impl Reference {
    pub fn parse(image: &str) -> Result<Reference, BadReference> {
        let bad = |problem| BadReference {
            image: image.into(),
            problem,
        };
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty, or contains spaces"));
        }
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256 digests are read"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("the digest is not 64 hex digits"));
                }
                (name, Some(digest))
            }
            None => (image, None),
        };
        let repo_with_host = crate::engine::image::repository(name);
        let tag = crate::engine::image::tag(name);
        // The first part is a host when it has a dot or a port, or is localhost.
        let (host, repository) = match repo_with_host.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), repo_with_host.to_string()),
        };
        let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
            DOCKER_HUB.to_string()
        } else {
            host
        };
        let repository = if host == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty() || !repository.chars().all(valid) {
            return Err(bad(
                "the repository must be lowercase letters, digits and ._-/",
            ));
        }
        let reference = match (digest, tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        Ok(Reference {
            host,
            repository,
            reference,
        })
    }

    /// Whether a Docker config `auths` key (`https://index.docker.io/v1/`,
    /// `registry.example.com:5000`, …) is for this registry.
    pub fn matches_auth_key(&self, key: &str) -> bool {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        key == self.host || (self.host == DOCKER_HUB && DOCKER_HUB_ALIASES.contains(&key))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.host, self.repository, self.reference
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults_and_hosts_with_ports() {
        let r = |s: &str| Reference::parse(s).unwrap().to_string();
        assert_eq!(r("ubuntu"), "registry-1.docker.io/library/ubuntu:latest");
        assert_eq!(
            r("docker.io/org/runner:2"),
            "registry-1.docker.io/org/runner:2"
        );
        assert_eq!(r("127.0.0.1:5000/runner:1"), "127.0.0.1:5000/runner:1");
        assert_eq!(r("localhost/e2e/runner"), "localhost/e2e/runner:latest");
        assert_eq!(
            r("ghcr.io/actions/actions-runner:2.3"),
            "ghcr.io/actions/actions-runner:2.3"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            r(&format!("ghcr.io/x/y:1@{digest}")),
            format!("ghcr.io/x/y@{digest}")
        );
    }

    #[test]
    fn bad_references_are_named() {
        for bad in ["", "a b", "Upper/Case", "x@md5:00", "x@sha256:abc"] {
            let e = Reference::parse(bad).unwrap_err();
            assert_eq!(e.image, bad);
        }
    }

    #[test]
    fn auth_keys_match_by_host() {
        let hub = Reference::parse("org/runner").unwrap();
        assert!(hub.matches_auth_key("https://index.docker.io/v1/"));
        assert!(hub.matches_auth_key("docker.io"));
        let own = Reference::parse("127.0.0.1:5000/runner").unwrap();
        assert!(own.matches_auth_key("127.0.0.1:5000"));
        assert!(own.matches_auth_key("https://127.0.0.1:5000/v2/"));
        assert!(!own.matches_auth_key("127.0.0.1"));
        assert!(!hub.matches_auth_key("ghcr.io"));
    }
}
