use std::path::PathBuf;

use super::config::{from_kubeconfig, in_cluster, Auth, Config, Env};
use super::ConfigError;

/// A directory of its own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("apiserver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An executable script (an exec plugin).
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.write(name, text);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate and its key, PEM.
fn pem_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A cluster stanza for [`kubeconfig`]: `server`, trusting `ca`.
fn cluster(server: &str, ca: &str) -> String {
    format!(
        "    server: {server}\n    certificate-authority-data: {}",
        b64(ca)
    )
}

fn kubeconfig(cluster: &str, user: &str, current: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n{cluster}\nusers:\n- name: u\n  user:\n{user}\n\
         contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: {current}\n"
    )
}

fn error(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, got a config from {}", c.source),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_kubeconfig_with_a_relative_ca_file_and_a_token() {
    let dir = Dir::new("token");
    let (ca, _) = pem_pair();
    dir.write("ca.crt", &ca);
    let file = dir.write(
        "config",
        &kubeconfig(
            "    server: https://127.0.0.1:6443/\n    certificate-authority: ca.crt",
            "    token: s3cret",
            "ctx",
        ),
    );
    let config = from_kubeconfig(&[file]).unwrap();
    assert_eq!(config.server, "https://127.0.0.1:6443");
    assert_eq!(config.roots.len(), 1);
    assert!(matches!(&config.auth, Auth::Token(t) if t == "s3cret"));
    assert!(config.identity.is_none());
    assert!(config.source.contains("\"ctx\""), "{}", config.source);
}

#[test]
fn client_certificate_data_and_merged_files() {
    let dir = Dir::new("merged");
    let (ca, _) = pem_pair();
    let (cert, key) = pem_pair();
    // The first file sets the context; the second holds cluster and user.
    let first = dir.write("first", "current-context: ctx\n");
    let second = dir.write(
        "second",
        &kubeconfig(
            &cluster("https://h:443", &ca),
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert),
                b64(&key)
            ),
            "other",
        ),
    );
    let config = from_kubeconfig(&[first, second]).unwrap();
    assert!(config.identity.is_some());
    assert!(matches!(config.auth, Auth::None));
    super::Client::new(config).unwrap();
}

#[test]
fn what_is_not_supported_or_missing_is_named() {
    let dir = Dir::new("bad");
    let (ca, _) = pem_pair();
    let cluster = cluster("https://h", &ca);
    let cases = [
        (
            kubeconfig(
                "    server: https://h\n    insecure-skip-tls-verify: true",
                "    token: t",
                "ctx",
            ),
            "insecure-skip-tls-verify",
        ),
        (
            kubeconfig(&cluster, "    auth-provider:\n      name: gcp", "ctx"),
            "auth-provider",
        ),
        (
            kubeconfig(&cluster, "    token: t", "nowhere"),
            "\"nowhere\"",
        ),
        (
            kubeconfig(&cluster.replace("https", "http"), "    token: t", "ctx"),
            "not https://",
        ),
        (
            kubeconfig(&cluster, "    client-certificate-data: eA==", "ctx"),
            "client-key",
        ),
        ("clusters: [".to_string(), "not a kubeconfig"),
        (
            kubeconfig(&cluster, "    token: t\n    as: admin", "ctx"),
            "impersonation",
        ),
        (
            kubeconfig(
                &cluster,
                "    exec:\n      command: x\n      provideClusterInfo: true",
                "ctx",
            ),
            "provideClusterInfo",
        ),
    ];
    for (text, named) in cases {
        let file = dir.write("config", &text);
        let e = error(from_kubeconfig(&[file]));
        assert!(e.contains(named), "{named}: {e}");
    }
}

#[test]
fn nulls_and_an_empty_current_context_read_as_kubectl_writes_them() {
    let dir = Dir::new("nulls");
    let (ca, _) = pem_pair();
    // What `kubectl config` leaves in a file of credentials only.
    let first = dir.write("first", "apiVersion: v1\nkind: Config\nclusters: null\ncontexts: null\ncurrent-context: \"\"\nusers: null\n");
    let second = dir.write(
        "second",
        &kubeconfig(
            &cluster("https://h", &ca),
            "    token: t\n    exec: null",
            "ctx",
        ),
    );
    let config = from_kubeconfig(&[first, second]).unwrap();
    assert!(matches!(&config.auth, Auth::Token(t) if t == "t"));
}

#[test]
fn an_exec_plugin_gives_the_token() {
    let dir = Dir::new("exec");
    let (ca, _) = pem_pair();
    let plugin = dir.script(
        "plugin.sh",
        "#!/bin/sh\ncase \"$KUBERNETES_EXEC_INFO\" in *ExecCredential*) ;; *) exit 3;; esac\n\
         echo '{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"'\"$TOKEN\"'\"}}'\n",
    );
    let file = dir.write(
        "config",
        &kubeconfig(
            &cluster("https://h", &ca),
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin.sh\n      \
             args: null\n      env:\n      - name: TOKEN\n        value: fr0m-exec",
            "ctx",
        ),
    );
    let config = from_kubeconfig(std::slice::from_ref(&file)).unwrap();
    match &config.auth {
        Auth::Exec(exec) => assert_eq!(exec.token().as_deref(), Some("fr0m-exec")),
        _ => panic!("not exec"),
    }
    std::fs::write(&plugin, "#!/bin/sh\nexit 1\n").unwrap();
    let e = error(from_kubeconfig(&[file]));
    assert!(e.contains("plugin.sh") && e.contains("failed"), "{e}");
}

#[test]
fn in_cluster_reads_the_service_account() {
    let dir = Dir::new("incluster");
    let (ca, _) = pem_pair();
    dir.write("ca.crt", &ca);
    let e = error(in_cluster("10.0.0.1", "443", &dir.0));
    assert!(e.contains("token"), "{e}");
    dir.write("token", "t0k3n\n");
    let config = in_cluster("fd00::1", "443", &dir.0).unwrap();
    assert_eq!(config.server, "https://[fd00::1]:443");
    assert!(matches!(&config.auth, Auth::TokenFile(f) if f.ends_with("token")));
    let e = error(in_cluster("10.0.0.1", "https", &dir.0));
    assert!(e.contains("KUBERNETES_SERVICE_PORT=\"https\""), "{e}");
}

#[test]
fn a_kubeconfig_comes_before_the_cluster_and_neither_is_an_error() {
    let dir = Dir::new("infer");
    let none = Env {
        kubeconfig: Some(dir.0.join("absent").display().to_string()),
        home: None,
        service_host: None,
        service_port: None,
        service_account_dir: dir.0.clone(),
    };
    let e = error(Config::infer(&none));
    assert!(
        e.contains("absent") && e.contains("KUBERNETES_SERVICE_HOST"),
        "{e}"
    );

    // A broken kubeconfig is an error even inside a cluster.
    let file = dir.write("config", "current-context: nowhere\n");
    let env = Env {
        kubeconfig: Some(file.display().to_string()),
        service_host: Some("10.0.0.1".into()),
        service_port: Some("443".into()),
        ..none
    };
    let e = error(Config::infer(&env));
    assert!(e.contains("nowhere"), "{e}");

    let half = Env {
        kubeconfig: None,
        home: None,
        service_host: Some("10.0.0.1".into()),
        service_port: None,
        service_account_dir: dir.0.clone(),
    };
    let e = error(Config::infer(&half));
    assert!(e.contains("KUBERNETES_SERVICE_PORT is not"), "{e}");
}

/// A real TLS server in place of the apiserver: `/version` wants the
/// token `good`, `/forbidden` answers as RBAC does, `/missing` 404, and
/// `/watch` two events.
mod served {
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::super::types::{List, Meta, WatchLine};
    use super::super::{ApiError, Client, Config};
    use super::*;

    fn answer(request: &Request<hyper::body::Incoming>) -> (u16, String) {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match request.uri().path() {
            _ if token != "Bearer good" => (
                401,
                r#"{"kind":"Status","message":"Unauthorized","reason":"Unauthorized","code":401}"#.into(),
            ),
            "/version" => (200, r#"{"gitVersion":"v1.37.2","major":"1"}"#.into()),
            "/forbidden" => (
                403,
                r#"{"kind":"Status","message":"nodes is forbidden: User \"x\" cannot list resource \"nodes\"","reason":"Forbidden","code":403}"#.into(),
            ),
            "/watch" => (
                200,
                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n\
                 {\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\n"
                    .into(),
            ),
            _ => (404, "404 page not found".into()),
        }
    }

    /// Serves until the test ends; its address and CA.
    async fn start() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(|request| async move {
                        let (status, body) = answer(&request);
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(body)))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (format!("https://{addr}"), cert.pem())
    }

    fn client(server: &str, ca: &str, auth: Auth) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        Client::new(Config {
            server: server.into(),
            roots,
            identity: None,
            auth,
            source: "test".into(),
        })
        .unwrap()
    }

    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(rename = "gitVersion")]
        git_version: String,
    }

    #[tokio::test]
    async fn gets_with_the_token_file_and_errors_that_say_what_the_apiserver_said() {
        let (server, ca) = start().await;
        let dir = Dir::new("served");
        let token = dir.write("token", "good\n");
        let client = client(&server, &ca, Auth::TokenFile(token.clone()));
        let version: Version = client.get("/version").await.unwrap();
        assert_eq!(version.git_version, "v1.37.2");

        let e = client.get::<List<Meta>>("/forbidden").await.err().unwrap();
        assert_eq!(e.code(), Some(403));
        let shown = e.to_string();
        assert!(
            shown.contains("/forbidden")
                && shown.contains("Forbidden")
                && shown.contains("cannot list resource"),
            "{shown}"
        );
        assert!(client.get_opt::<Meta>("/missing").await.unwrap().is_none());

        // The kubelet rotated the token: the next request sends the new one.
        std::fs::write(&token, "stale").unwrap();
        let e = client.get::<Version>("/version").await.err().unwrap();
        assert_eq!(e.code(), Some(401), "{e}");
        std::fs::write(&token, "good").unwrap();
        client.get::<Version>("/version").await.unwrap();

        let mut watch = client
            .watch(
                "/watch",
                "application/json",
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
        let mut kinds = Vec::new();
        while let Some(line) = watch.next::<WatchLine<Meta>>().await {
            kinds.push(line.unwrap().kind);
        }
        assert_eq!(kinds, ["ADDED", "DELETED"]);
    }

    #[tokio::test]
    async fn an_exec_plugin_is_run_again_on_401() {
        let (server, ca) = start().await;
        let dir = Dir::new("renew");
        // The first run gives an expired token, later runs a good one.
        let runs = dir.0.join("runs");
        dir.script(
            "plugin.sh",
            &format!(
                "#!/bin/sh\necho run >> {runs}\nif [ $(wc -l < {runs}) -gt 1 ]; then t=good; else t=expired; fi\n\
                 echo '{{\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"'$t'\"}}}}'\n",
                runs = runs.display()
            ),
        );
        let file = dir.write(
            "config",
            &kubeconfig(
                &cluster(&server, &ca),
                "    exec:\n      command: ./plugin.sh",
                "ctx",
            ),
        );
        let config = from_kubeconfig(&[file]).unwrap();
        let client = Client::new(config).unwrap();
        let version: Result<Version, ApiError> = client.get("/version").await;
        assert_eq!(version.unwrap().git_version, "v1.37.2");
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);
    }
}
