//! A small registry client: an image's config (ENTRYPOINT, CMD) by manifest,
//! over hyper, hyper-util and hyper-rustls (ring), as the apiserver client
//! (`webhook/apiserver`). Anonymous first, then each set of credentials;
//! Basic or Bearer token auth; an OCI index or Docker manifest list resolved for one
//! platform; every body bounded and every blob checked against its digest.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode, Uri};
use serde_json::Value;

use super::auth::{self, Challenge, Credentials};
use super::reference::Reference;
use crate::engine::{ImageCommand, Platform};
use crate::webhook::percent::encode;

/// Manifests and configs are small; a bigger body is refused, not read.
pub const MAX_BODY: usize = 4 << 20;
const MAX_REDIRECTS: usize = 5;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Reference(#[from] super::reference::BadReference),
    #[error("{url}: {source}")]
    Http {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url}: reading the body: {message}")]
    Body { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: not authorized (anonymous and with {tried} credential set(s))")]
    Unauthorized { url: String, tried: usize },
    #[error("{url}: {problem}")]
    Invalid { url: String, problem: String },
    /// The client could not be made (its CAs, at the first look-up).
    #[error("registry client: {0}")]
    Setup(String),
    #[error("{image}: no manifest for {platform} in its index (has: {has})")]
    NoPlatform {
        image: String,
        platform: Platform,
        has: String,
    },
}

impl FetchError {
    fn invalid(url: &str, problem: impl Into<String>) -> Self {
        FetchError::Invalid {
            url: url.into(),
            problem: problem.into(),
        }
    }
}

/// What one look-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The digest of the image's config blob (the cache's second key).
    pub config_digest: String,
    pub command: ImageCommand,
    /// How many HTTP requests it took (for logs and tests).
    pub requests: usize,
}

#[derive(Clone)]
pub struct Client {
    http: crate::webhook::https::Client,
    /// The `host[:port]`s reached over plain HTTP (`registry.plainHttpRegistries`).
    plain_http: std::sync::Arc<[String]>,
}

impl Client {
    /// HTTPS, trusting `roots` (the system's and the configured CA file's),
    /// but for the registries in `plain_http`: plain HTTP to them, and to
    /// nothing else (a redirect or token realm elsewhere in clear is refused).
    pub fn new(
        roots: rustls::RootCertStore,
        plain_http: &[String],
    ) -> Result<Client, rustls::Error> {
        Ok(Client {
            http: crate::webhook::https::client(roots, None, true)?,
            plain_http: plain_http.into(),
        })
    }

    fn is_plain_http(&self, host: &str) -> bool {
        self.plain_http.iter().any(|h| h == host)
    }

    /// The image's ENTRYPOINT and CMD for `platform`, trying each of
    /// `attempts` in order (`None`: anonymous) until one is authorized.
    pub async fn image_command(
        &self,
        image: &Reference,
        platform: &Platform,
        attempts: &[Option<Credentials>],
    ) -> Result<Fetched, FetchError> {
        let mut session = Session {
            client: self,
            image,
            authorization: None,
            requests: 0,
        };
        let manifest_url = session.url(&format!("manifests/{}", image.reference));
        let accept = INDEX_TYPES
            .iter()
            .chain(&MANIFEST_TYPES)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let mut tried = 0;
        let mut last_unauthorized = None;
        let mut body = None;
        for creds in attempts.iter().map(Option::as_ref) {
            match session.get_authorized(&manifest_url, &accept, creds).await {
                Ok(b) => {
                    body = Some(b);
                    break;
                }
                Err(e @ FetchError::Unauthorized { .. }) => {
                    tried += usize::from(creds.is_some());
                    last_unauthorized = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(mut manifest) = body else {
            return Err(match last_unauthorized {
                Some(FetchError::Unauthorized { url, .. }) => {
                    FetchError::Unauthorized { url, tried }
                }
                Some(e) => e,
                None => FetchError::invalid(&manifest_url, "no answer"),
            });
        };
        if let Some(digest) = image.reference.strip_prefix("sha256:") {
            check_digest(&manifest_url, &manifest, digest)?;
        }
        let mut doc = json(&manifest_url, &manifest)?;
        if is_index(&doc) {
            let digest = pick(&doc, platform).ok_or_else(|| FetchError::NoPlatform {
                image: image.to_string(),
                platform: platform.clone(),
                has: platforms(&doc),
            })?;
            let url = session.url(&format!("manifests/{digest}"));
            manifest = session.get(&url, &MANIFEST_TYPES.join(", ")).await?;
            check_digest(&url, &manifest, digest.trim_start_matches("sha256:"))?;
            doc = json(&url, &manifest)?;
        }
        let config_digest = doc
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| {
                FetchError::invalid(&manifest_url, "the manifest names no sha256 config")
            })?
            .to_string();
        let url = session.url(&format!("blobs/{config_digest}"));
        let config = session.get(&url, "*/*").await?;
        check_digest(&url, &config, config_digest.trim_start_matches("sha256:"))?;
        let config = json(&url, &config)?;
        let strings = |key: &str| -> Result<Vec<String>, FetchError> {
            match config.pointer(&format!("/config/{key}")) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(String::from).ok_or_else(|| {
                            FetchError::invalid(&url, format!("config.{key} holds a non-string"))
                        })
                    })
                    .collect(),
                Some(_) => Err(FetchError::invalid(
                    &url,
                    format!("config.{key} is not a list"),
                )),
            }
        };
        Ok(Fetched {
            command: ImageCommand {
                entrypoint: strings("Entrypoint")?,
                cmd: strings("Cmd")?,
            },
            config_digest,
            requests: session.requests,
        })
    }
}

/// One look-up's requests, sharing the authorization that worked.
struct Session<'a> {
    client: &'a Client,
    image: &'a Reference,
    authorization: Option<HeaderValue>,
    requests: usize,
}

impl Session<'_> {
    fn url(&self, path: &str) -> String {
        let scheme = if self.client.is_plain_http(&self.image.host) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}/{path}",
            self.image.host, self.image.repository
        )
    }

    /// GET with `creds`: on a 401, answers the challenge (Basic, or a
    /// Bearer token for pulling this repository) and tries once more.
    async fn get_authorized(
        &mut self,
        url: &str,
        accept: &str,
        creds: Option<&Credentials>,
    ) -> Result<Bytes, FetchError> {
        refuse_clear_text(url, creds)?;
        self.authorization = None;
        let challenge = match self.request(url, accept).await? {
            Answer::Body(b) => return Ok(b),
            Answer::Unauthorized(challenge) => challenge,
        };
        let unauthorized = || FetchError::Unauthorized {
            url: url.into(),
            tried: 0,
        };
        self.authorization = match (challenge, creds) {
            (Some(Challenge::Basic), Some(c)) => Some(header(&c.basic(), url)?),
            (
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }),
                c,
            ) => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", self.image.repository));
                let token = self.token(&realm, service.as_deref(), &scope, c).await?;
                Some(header(&format!("Bearer {token}"), url)?)
            }
            _ => return Err(unauthorized()),
        };
        match self.request(url, accept).await? {
            Answer::Body(b) => Ok(b),
            Answer::Unauthorized(_) => Err(unauthorized()),
        }
    }

    /// GET with the session's authorization; a 401 is an error here.
    async fn get(&mut self, url: &str, accept: &str) -> Result<Bytes, FetchError> {
        match self.request(url, accept).await? {
            Answer::Body(b) => Ok(b),
            Answer::Unauthorized(_) => Err(FetchError::Unauthorized {
                url: url.into(),
                tried: 0,
            }),
        }
    }

    /// A token from the registry's token service (Docker Hub, GHCR, …).
    async fn token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, FetchError> {
        let mut url = format!("{realm}?scope={}", encode(scope));
        if let Some(service) = service {
            url.push_str(&format!("&service={}", encode(service)));
        }
        refuse_clear_text(&url, creds)?;
        self.authorization = creds.map(|c| header(&c.basic(), &url)).transpose()?;
        let body = match self.request(&url, "application/json").await? {
            Answer::Body(b) => b,
            Answer::Unauthorized(_) => return Err(FetchError::Unauthorized { url, tried: 0 }),
        };
        let doc = json(&url, &body)?;
        doc.get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .ok_or_else(|| FetchError::invalid(&url, "no token in the answer"))
    }

    /// One GET, following redirects (blob storage; the authorization is
    /// dropped when the host changes).
    async fn request(&mut self, url: &str, accept: &str) -> Result<Answer, FetchError> {
        let mut url = url.to_string();
        let mut authorization = self.authorization.clone();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url
                .parse()
                .map_err(|e| FetchError::invalid(&url, format!("not a URL: {e}")))?;
            let plain_allowed = uri
                .authority()
                .is_some_and(|a| self.client.is_plain_http(a.as_str()));
            if uri.scheme_str() != Some("https") && !plain_allowed {
                return Err(FetchError::invalid(
                    &url,
                    "plain HTTP to a host not in registry.plainHttpRegistries",
                ));
            }
            let mut req = Request::get(uri.clone());
            if let Some(a) = &authorization {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let req = req
                .header(ACCEPT, accept)
                .body(Empty::new())
                .map_err(|e| FetchError::invalid(&url, e.to_string()))?;
            self.requests += 1;
            let response =
                self.client
                    .http
                    .request(req)
                    .await
                    .map_err(|source| FetchError::Http {
                        url: url.clone(),
                        source,
                    })?;
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| FetchError::invalid(&url, "a redirect without Location"))?;
                let next = resolve(&uri, next);
                if !keeps_authorization(&uri, &next) {
                    authorization = None;
                }
                url = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(auth::parse_challenge);
                return Ok(Answer::Unauthorized(challenge));
            }
            if status == StatusCode::FORBIDDEN {
                return Ok(Answer::Unauthorized(None));
            }
            if !status.is_success() {
                return Err(FetchError::Status { url, status });
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FetchError::Body {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            return Ok(Answer::Body(body.to_bytes()));
        }
        Err(FetchError::invalid(
            &url,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

enum Answer {
    Body(Bytes),
    Unauthorized(Option<Challenge>),
}

/// Whether a redirect from `from` to `to` may carry the request's
/// Authorization: only to the same host and port, and never from HTTPS down
/// to plain HTTP (a listed plain-HTTP host that also serves HTTPS would
/// otherwise get a pull secret's token in clear).
fn keeps_authorization(from: &Uri, to: &str) -> bool {
    to.parse::<Uri>().ok().is_some_and(|to| {
        to.authority() == from.authority()
            && (to.scheme_str() == Some("https") || from.scheme_str() != Some("https"))
    })
}

/// A pull secret's credentials are never sent over plain HTTP: a request
/// with them to an `http://` URL is refused before anything is sent.
fn refuse_clear_text(url: &str, creds: Option<&Credentials>) -> Result<(), FetchError> {
    if creds.is_some() && url.starts_with("http://") {
        return Err(FetchError::invalid(
            url,
            "a pull secret's credentials are never sent over plain HTTP",
        ));
    }
    Ok(())
}

fn header(value: &str, url: &str) -> Result<HeaderValue, FetchError> {
    HeaderValue::from_str(value)
        .map_err(|_| FetchError::invalid(url, "credentials that are not a valid header"))
}

/// A Location header against the URL it came from (absolute, or a path).
fn resolve(base: &Uri, location: &str) -> String {
    if location.starts_with("https://") || location.starts_with("http://") {
        return location.to_string();
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{authority}{location}")
}

/// Percent-encodes a query value (scopes hold `:` and `/`).
fn json(url: &str, body: &[u8]) -> Result<Value, FetchError> {
    serde_json::from_slice(body).map_err(|e| FetchError::invalid(url, format!("not JSON: {e}")))
}

/// A body fetched by digest must be what the digest says.
fn check_digest(url: &str, body: &[u8], hex: &str) -> Result<(), FetchError> {
    let got = ring::digest::digest(&ring::digest::SHA256, body);
    let got: String = got.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if got != hex.to_ascii_lowercase() {
        return Err(FetchError::invalid(
            url,
            format!("content has digest sha256:{got}"),
        ));
    }
    Ok(())
}

fn is_index(doc: &Value) -> bool {
    let media = doc.get("mediaType").and_then(Value::as_str).unwrap_or("");
    INDEX_TYPES.contains(&media)
        || (media.is_empty() && doc.get("manifests").is_some_and(Value::is_array))
}

/// The digest of `platform`'s manifest in an index (attestation
/// manifests, platform `unknown/unknown`, never match).
fn pick<'a>(index: &'a Value, platform: &Platform) -> Option<&'a str> {
    index
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            m.pointer("/platform/os").and_then(Value::as_str) == Some(platform.os.as_str())
                && m.pointer("/platform/architecture").and_then(Value::as_str)
                    == Some(platform.architecture.as_str())
        })?
        .get("digest")?
        .as_str()
        .filter(|d| d.starts_with("sha256:"))
}

fn platforms(index: &Value) -> String {
    let list: Vec<String> = index
        .get("manifests")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            Some(format!(
                "{}/{}",
                m.pointer("/platform/os")?.as_str()?,
                m.pointer("/platform/architecture")?.as_str()?
            ))
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_index_entry_for_the_platform_is_picked() {
        let index = json!({"mediaType": INDEX_TYPES[0], "manifests": [
            {"digest": "sha256:aa", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:cc", "platform": {"os": "unknown", "architecture": "unknown"}},
        ]});
        assert!(is_index(&index));
        assert_eq!(pick(&index, &Platform::default()), Some("sha256:bb"));
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
        };
        assert_eq!(pick(&index, &s390), None);
        assert_eq!(
            platforms(&index),
            "linux/arm64, linux/amd64, unknown/unknown"
        );
        assert!(!is_index(
            &json!({"mediaType": MANIFEST_TYPES[0], "config": {}})
        ));
    }

    #[test]
    fn authorization_follows_redirects_to_the_same_host_and_never_into_clear_text() {
        let https: Uri = "https://r.example:5000/v2/x/manifests/1".parse().unwrap();
        let http: Uri = "http://r.example:5000/v2/x/manifests/1".parse().unwrap();
        let cases = [
            (&https, "https://r.example:5000/v2/x/blobs/sha256:aa", true),
            (&https, "https://cdn.example/blob", false),
            (&https, "https://r.example:5001/v2/x/blobs/sha256:aa", false),
            (&https, "http://r.example:5000/v2/x/blobs/sha256:aa", false),
            (&https, "not a url", false),
            // A listed plain-HTTP registry: its own (anonymous) token stays.
            (&http, "http://r.example:5000/v2/x/blobs/sha256:aa", true),
            (&http, "https://r.example:5000/v2/x/blobs/sha256:aa", true),
            (&http, "http://other.example:5000/blob", false),
        ];
        for (from, to, keeps) in cases {
            assert_eq!(keeps_authorization(from, to), keeps, "{from} -> {to}");
        }
    }

    #[test]
    fn digests_are_checked() {
        let hex = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; // "foo"
        assert!(check_digest("u", b"foo", hex).is_ok());
        assert!(check_digest("u", b"bar", hex).is_err());
    }

    #[test]
    fn scopes_are_encoded_and_locations_resolved() {
        assert_eq!(
            encode("repository:org/x:pull"),
            "repository%3Aorg%2Fx%3Apull"
        );
        let base: Uri = "https://r.example:5000/v2/x/blobs/sha256:aa"
            .parse()
            .unwrap();
        assert_eq!(
            resolve(&base, "/store/aa"),
            "https://r.example:5000/store/aa"
        );
        assert_eq!(
            resolve(&base, "https://cdn.example/aa"),
            "https://cdn.example/aa"
        );
    }
}
