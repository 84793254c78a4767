//! Registry credentials: Docker config Secrets in, the credentials for one
//! registry out; and the `WWW-Authenticate` challenges a registry answers
//! an anonymous request with (Basic, or Bearer with a token service).

use base64::Engine as _;
use serde_json::Value;

use super::reference::Reference;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Never the password, whatever logs the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDockerConfig {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("entry {0:?}: `auth` is not base64 of user:password")]
    BadAuth(String),
}

/// The credentials for `image`'s registry in a Secret's Docker config:
/// `.dockerconfigjson` (`{"auths": {…}}`) or the older `.dockercfg` (the
/// `auths` map itself). Entries are keyed by host, with or without scheme
/// and path.
pub fn from_docker_config(
    json: &[u8],
    image: &Reference,
) -> Result<Option<Credentials>, BadDockerConfig> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| BadDockerConfig::NotJson(e.to_string()))?;
    let auths = doc.get("auths").unwrap_or(&doc);
    let Some(auths) = auths.as_object() else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if !image.matches_auth_key(key) {
            continue;
        }
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let (Some(u), Some(p)) = (field("username"), field("password")) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        if let Some(auth) = field("auth") {
            let bad = || BadDockerConfig::BadAuth(key.clone());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
    }
    Ok(None)
}

/// What a registry's 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` or `Basic …`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, t)| (v, t)),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_both_docker_config_forms() {
        let image = Reference::parse("127.0.0.1:5000/runner:1").unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cr:et");
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "eDp5"}}, "https://127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#
        );
        let c = from_docker_config(json.as_bytes(), &image)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("ci", "s3cr:et")
        );
        let old = r#"{"127.0.0.1:5000": {"username": "u", "password": "p"}}"#;
        let c = from_docker_config(old.as_bytes(), &image).unwrap().unwrap();
        assert_eq!(c.username, "u");
        assert_eq!(format!("{c:?}"), "Credentials(\"u\", ***)");
        assert_eq!(from_docker_config(br#"{"auths": {}}"#, &image), Ok(None));
        assert!(matches!(
            from_docker_config(br#"{"auths": {"127.0.0.1:5000": {"auth": "%%"}}}"#, &image),
            Err(BadDockerConfig::BadAuth(k)) if k == "127.0.0.1:5000"
        ));
        assert!(matches!(
            from_docker_config(b"{", &image),
            Err(BadDockerConfig::NotJson(_))
        ));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge("Bearer realm=https://t.example/token"),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: None,
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
