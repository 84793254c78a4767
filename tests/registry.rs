//! Issue 16 with a real registry: Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1 with TLS from a generated CA, test
//! images pushed to it over its API (tests/registry/push-images.py), and
//! the real `serve` binary reading runners' ENTRYPOINT and CMD from it.
//! The registry's access log is the witness of what the webhook asked.

mod common;
#[path = "registry/serve.rs"]
mod serve;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::server::{connect, issue_certs, review_for, Conn, Proto, Server};
use common::{root, temp_dir};
use dind_injector::engine::{ImageCommand, Platform};
use dind_injector::webhook::registry::auth;
use dind_injector::webhook::registry::client::{Client, FetchError};
use dind_injector::webhook::registry::reference::Reference;
use serde_json::{json, Value};

const V1: &str = "admission.k8s.io/v1";
/// The webhook's budget in these tests (`registry.budgetMilliseconds`).
const BUDGET: Duration = Duration::from_millis(1500);

/// One `docker-registry serve` on 127.0.0.1, TLS with the test CA (or
/// plain HTTP).
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
    scheme: &'static str,
}

impl Registry {
    fn start(certs: &Path, basic_auth: bool) -> Registry {
        let tls = (certs.join("tls.crt"), certs.join("tls.key"));
        Self::start_with(Some((&tls.0, &tls.1)), basic_auth)
    }

    fn start_with(tls: Option<(&Path, &Path)>, basic_auth: bool) -> Registry {
        let dir = temp_dir("registry");
        let port = free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = serve::write_config(&dir, port, tls, basic_auth).expect("registry config");
        let log = std::fs::File::create(dir.join("access.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (the Debian package) must be installed: make deps");
        let mut registry = Registry {
            child,
            port,
            dir,
            scheme,
        };
        let listening =
            serve::wait_until_listening(port, Duration::from_secs(20), || {
                match registry.child.try_wait() {
                    Ok(None) => Ok(()),
                    Ok(Some(status)) => Err(format!("docker-registry exited ({status})")),
                    Err(e) => Err(format!("docker-registry: {e}")),
                }
            });
        if let Err(why) = listening {
            panic!("{why}; its log:\n{}", registry.log());
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Requests for `repo` in the access log.
    fn requests(&self, repo: &str) -> usize {
        serve::requests(&self.log(), repo)
    }

    fn push(&self, ca: &Path, user: Option<&str>) {
        let base = format!("{}://{}", self.scheme, self.host());
        let out = serve::push_command(&root(), &base, ca, user, &[])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "push failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The webhook, trusting the test CA for registries.
fn webhook(certs: &Path) -> Server {
    webhook_with(certs, "")
}

/// [`webhook`] with more of the `registry` section (indented lines).
fn webhook_with(certs: &Path, registry: &str) -> Server {
    let config = certs.join("webhook.yaml");
    std::fs::write(
        &config,
        format!(
            "sidecarMode: classic\nregistry:\n  caFile: {}\n  budgetMilliseconds: {}\n{registry}",
            certs.join("ca.crt").display(),
            BUDGET.as_millis()
        ),
    )
    .expect("config");
    Server::start(&["--config", config.to_str().expect("utf8")])
}

/// A runner pod with no command.
fn pod(image: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "ci-", "namespace": "ci", "labels": {"runner": "true"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "runner", "image": image}]}
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

/// What a reviewer wants to see of one review: the runner's command and
/// args as stored, the sidecar's mode of watching, the warnings; and how
/// long the review took on a connection already open.
async fn review(conn: &mut Conn, pod: &Value) -> (Value, Duration) {
    let started = Instant::now();
    let reply = conn
        .review(&review_for(V1, "uid-1", pod))
        .await
        .expect("review");
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let response = reply.json()["response"].clone();
    assert_eq!(response["allowed"], true, "{response}");
    let b64 = response["patch"].as_str().expect("injected");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("patch");
    let stored = common::apply(pod, &patch);
    let runner = &stored["spec"]["containers"][0];
    let dind = stored["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "dind"))
        .expect("dind");
    let sidecar_flag = dind["command"][2].clone();
    let record = json!({
        "command": runner.get("command").cloned().unwrap_or(Value::Null),
        "args": runner.get("args").cloned().unwrap_or(Value::Null),
        "sidecar": sidecar_flag,
        "warnings": response.get("warnings").cloned().unwrap_or(json!([])),
    });
    (record, took)
}

/// Reviews per median: enough to see through a busy machine.
const REPEAT: usize = 15;

/// The median time of [`REPEAT`] reviews of `pod`.
async fn median(conn: &mut Conn, pod: &Value) -> Duration {
    let mut times = Vec::with_capacity(REPEAT);
    for _ in 0..REPEAT {
        times.push(review(conn, pod).await.1);
    }
    times.sort();
    times[REPEAT / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn check_golden(name: &str, got: &Value) {
    let path = root().join(format!("tests/golden/registry/{name}.json"));
    let text = serde_json::to_string_pretty(got).expect("json") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        text,
        want,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// Every kind of image config, resolved by the real webhook from the real
/// registry; the second pod of an image costs the registry nothing; a
/// missing image costs at most the budget and the pod is still admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_reads_runners_commands_from_a_real_registry() {
    let certs = temp_dir("registry-certs");
    issue_certs(&certs, 30);
    let registry = Registry::start(&certs, false);
    registry.push(&certs.join("ca.crt"), None);
    let server = webhook(&certs);
    let host = registry.host();

    let arm64 = json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}});
    let cases: [(&str, &str, Value); 7] = [
        ("entrypoint", "runner/entrypoint:1", json!({})),
        ("entrypoint-cmd", "runner/entrypoint-cmd:1", json!({})),
        ("cmd-only", "runner/cmd-only:1", json!({})),
        ("multi-amd64", "runner/multi:1", json!({})),
        ("multi-arm64", "runner/multi:1", arm64),
        ("none", "runner/none:1", json!({})),
        ("missing", "runner/missing:1", json!({})),
    ];
    let mut conn = connect(server.addr, &server.ca(), Proto::H1)
        .await
        .expect("connect");
    // A pod whose runner has a command: the review without any look-up.
    let mut own = pod(&format!("{host}/runner/none:1"), json!({}));
    own["spec"]["containers"][0]["command"] = json!(["/own.sh"]);
    review(&mut conn, &own).await;
    let baseline = median(&mut conn, &own).await;
    let mut golden = serde_json::Map::new();
    let mut timings = vec![format!(
        "runner with a command (no look-up): median {:.2} ms",
        ms(baseline)
    )];
    for (name, image, extra) in cases {
        let repo = image.split(':').next().expect("repo");
        let p = pod(&format!("{host}/{image}"), extra);
        let before = registry.requests(repo);
        let (first, cold) = review(&mut conn, &p).await;
        let asked = registry.requests(repo) - before;
        let (second, _) = review(&mut conn, &p).await;
        let cached = median(&mut conn, &p).await;
        assert_eq!(
            registry.requests(repo) - before,
            asked,
            "{name}: later reviews of {image} asked the registry again\n{}",
            registry.log()
        );
        assert_eq!(first, second, "{name}: the cached answer differs");
        assert!(
            cold < BUDGET + Duration::from_millis(500),
            "{name}: the first review took {cold:?}, over the budget"
        );
        timings.push(format!(
            "{name}: cold {:.2} ms ({asked} registry requests), cached median {:.2} ms",
            ms(cold),
            ms(cached)
        ));
        golden.insert(name.to_string(), first);
    }
    // The same image with the pod's own args: they stay, the CMD is not added.
    let mut with_args = pod(&format!("{host}/runner/entrypoint-cmd:1"), json!({}));
    with_args["spec"]["containers"][0]["args"] = json!(["--mine"]);
    let (record, _) = review(&mut conn, &with_args).await;
    golden.insert("entrypoint-cmd-pod-args".into(), record);
    check_golden("commands", &Value::Object(golden));
    // The look-ups' own time, as the webhook logs it.
    for line in server
        .log_text()
        .lines()
        .filter(|l| l.contains("registry: image command"))
    {
        let v: Value = serde_json::from_str(line).unwrap_or_default();
        let f = &v;
        timings.push(format!(
            "look-up {} ({}): {} ms, {} requests",
            f["image"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches(&format!("{host}/")),
            f["platform"].as_str().unwrap_or("?"),
            f["took_ms"],
            f["requests"]
        ));
    }
    println!("{}", timings.join("\n"));

    let metrics = server.metrics_text().await;
    // (2 + REPEAT) × 5 found (the multi-platform image twice) + 1 with the
    // pod's args; the image that names no program and the missing one.
    let registry_line = format!(
        r#"dind_injector_runner_commands_total{{source="registry"}} {}"#,
        (2 + REPEAT) * 5 + 1
    );
    let none_line = format!(
        r#"dind_injector_runner_commands_total{{source="none"}} {}"#,
        (2 + REPEAT) * 2
    );
    for line in [registry_line.as_str(), none_line.as_str()] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let log = server
        .log_with(&[
            "\"command_source\":\"registry\"",
            "\"command_source\":\"none\"",
        ])
        .await;
    assert!(
        log.contains("\"command_source\":\"registry\"")
            && log.contains("\"command_source\":\"none\""),
        "the review log says how each command was found:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&certs);
}

/// A registry that accepts connections and never answers: the first pod
/// waits the budget and is admitted unsupervised; a second pod right after
/// does not wait again (the look-up under way has used the budget up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_registry_costs_one_budget() {
    let certs = temp_dir("registry-silent");
    issue_certs(&certs, 30);
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        // Accept and hold: the TLS handshake never gets an answer.
        let mut conns = Vec::new();
        for conn in silent.incoming().take(4) {
            conns.push(conn);
        }
        std::thread::sleep(Duration::from_secs(40));
        drop(conns);
    });
    let server = webhook(&certs);
    let mut conn = connect(server.addr, &server.ca(), Proto::H2)
        .await
        .expect("connect");
    let p = pod(&format!("{host}/runner/silent:1"), json!({}));
    let (first, cold) = review(&mut conn, &p).await;
    assert!(
        cold >= BUDGET - Duration::from_millis(100) && cold < BUDGET + Duration::from_millis(700),
        "the first review took {cold:?}; the budget is {BUDGET:?}"
    );
    assert_eq!(
        first["command"],
        Value::Null,
        "fallback: unsupervised: {first}"
    );
    assert_eq!(first["sidecar"], "--watch-runner=runner", "{first}");
    let (_, again) = review(&mut conn, &p).await;
    assert!(
        again < Duration::from_millis(300),
        "the second review waited {again:?} for the same silent registry"
    );
    println!(
        "silent registry: first review {:.0} ms, second {:.1} ms",
        cold.as_secs_f64() * 1000.0,
        again.as_secs_f64() * 1000.0
    );
    drop(server);
    drop(held);
    let _ = std::fs::remove_dir_all(&certs);
}

/// Basic auth: anonymous access is refused; the credentials of a pull
/// secret's `.dockerconfigjson` (parsed as the webhook parses the Secrets
/// it reads) are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_a_pull_secret_s_credentials() {
    let certs = temp_dir("registry-auth");
    issue_certs(&certs, 30);
    let registry = Registry::start(&certs, true);
    registry.push(
        &certs.join("ca.crt"),
        Some(&format!("{}:{}", serve::USER, serve::PASSWORD)),
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(certs.join("ca.crt")).expect("ca")
    {
        let cert: rustls::pki_types::CertificateDer<'static> = cert.expect("cert");
        roots.add(cert).expect("add");
    }
    let client = Client::new(roots, &[]).expect("TLS configuration");
    let image = Reference::parse(&format!("{}/private/runner:1", registry.host())).expect("ref");
    let platform = Platform::default();
    match client.image_command(&image, &platform, &[None]).await {
        Err(FetchError::Unauthorized { .. }) => {}
        other => panic!("anonymous access to the private image: {other:?}"),
    }
    let secret = json!({"auths": {registry.host(): {
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", serve::USER, serve::PASSWORD))
    }}});
    let creds = auth::from_docker_config(secret.to_string().as_bytes(), &image)
        .expect("docker config")
        .expect("credentials for the registry");
    let wrong = auth::Credentials {
        username: serve::USER.into(),
        password: "wrong".into(),
    };
    let found = client
        .image_command(&image, &platform, &[None, Some(wrong), Some(creds)])
        .await
        .expect("with the secret's credentials");
    assert_eq!(
        found.command,
        ImageCommand {
            entrypoint: vec!["/private.sh".into()],
            cmd: vec![],
        }
    );
    let _ = std::fs::remove_dir_all(&certs);
}

/// `registry.plainHttpRegistries`: a registry without TLS is read over
/// plain HTTP when listed, and only then (the same registry named
/// `localhost:PORT`, not listed, is tried over HTTPS and the runner gets
/// the fallback); a pull secret's credentials are never sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_to_the_listed_registries() {
    let certs = temp_dir("registry-plain");
    issue_certs(&certs, 30);
    let registry = Registry::start_with(None, false);
    registry.push(&certs.join("ca.crt"), None);
    let host = registry.host();
    let server = webhook_with(&certs, &format!("  plainHttpRegistries: ['{host}']\n"));
    let mut conn = connect(server.addr, &server.ca(), Proto::H1)
        .await
        .expect("connect");
    let (listed, _) = review(
        &mut conn,
        &pod(&format!("{host}/runner/entrypoint:1"), json!({})),
    )
    .await;
    assert_eq!(
        listed["command"].as_array().and_then(|c| c.last()),
        Some(&json!("/entry.sh")),
        "{listed}"
    );
    let unlisted = format!("localhost:{}/runner/entrypoint-cmd:1", registry.port);
    let (fallback, _) = review(&mut conn, &pod(&unlisted, json!({}))).await;
    assert_eq!(fallback["command"], Value::Null, "{fallback}");
    assert_eq!(fallback["sidecar"], "--watch-runner=runner", "{fallback}");
    assert!(
        registry.requests("runner/entrypoint") > 0,
        "{}",
        registry.log()
    );
    assert_eq!(
        registry.requests("runner/entrypoint-cmd"),
        0,
        "{}",
        registry.log()
    );
    let log = server
        .log_with(&["registry: image command not found"])
        .await;
    assert!(log.contains("registry: image command not found"), "{log}");

    // A pull secret's credentials are not sent in clear, even to a listed registry.
    let private = Registry::start_with(None, true);
    private.push(
        &certs.join("ca.crt"),
        Some(&format!("{}:{}", serve::USER, serve::PASSWORD)),
    );
    let client = Client::new(rustls::RootCertStore::empty(), &[private.host()]).expect("client");
    let image = Reference::parse(&format!("{}/private/runner:1", private.host())).expect("ref");
    let creds = auth::Credentials {
        username: serve::USER.into(),
        password: serve::PASSWORD.into(),
    };
    let refused = client
        .image_command(&image, &Platform::default(), &[None, Some(creds)])
        .await;
    match refused {
        Err(FetchError::Invalid { problem, .. }) => {
            assert!(problem.contains("never sent over plain HTTP"), "{problem}")
        }
        other => panic!("credentials over plain HTTP: {other:?}"),
    }
    // The registry saw the anonymous request (refused) and no other.
    assert_eq!(private.requests("private/runner"), 1, "{}", private.log());
    let _ = std::fs::remove_dir_all(&certs);
}
