//! The real `serve` binary over real TLS: every decision path, both HTTP
//! versions, bad input, connection limits and timeouts, certificate rotation
//! under load, and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::server::{client_config, connect, fixture, review_for, tls_connect, Proto, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V1: &str = "admission.k8s.io/v1";

fn decode_patch(response: &Value) -> json_patch::Patch {
    let b64 = response["patch"].as_str().expect("patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON Patch")
}

async fn assert_alive(server: &Server) {
    let mut conn = connect(server.addr, &server.ca(), Proto::H2)
        .await
        .expect("connect");
    let reply = conn
        .request("GET", "/healthz", None, vec![])
        .await
        .expect("healthz");
    assert_eq!(reply.status, 200, "server no longer answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_over_http2_and_http1() {
    let server = Server::start(&[]);
    for proto in [Proto::H2, Proto::H1] {
        let mut conn = connect(server.addr, &server.ca(), proto)
            .await
            .expect("connect");
        let cases = [
            ("job-pod", "inject"),
            ("native-mode", "inject"),
            ("replicaset-pod-no-command", "inject"),
            ("non-runner", "skip"),
            ("opted-out", "skip"),
            ("own-dind-sidecar", "skip"),
            ("mirror-pod", "skip"),
            ("invalid-annotation", "deny"),
            ("host-network", "deny"),
        ];
        for (name, expected) in cases {
            let pod = fixture(name);
            let uid = format!("uid-{name}-{proto:?}");
            let reply = conn
                .review(&review_for(V1, &uid, &pod))
                .await
                .expect("review");
            assert_eq!(reply.status, 200, "{name}: {}", reply.text());
            assert_eq!(
                reply.version,
                if proto == Proto::H2 {
                    hyper::Version::HTTP_2
                } else {
                    hyper::Version::HTTP_11
                }
            );
            let review = reply.json();
            assert_eq!(review["apiVersion"], V1);
            assert_eq!(review["kind"], "AdmissionReview");
            let response = &review["response"];
            assert_eq!(response["uid"], uid.as_str(), "{name}: uid echoed");
            match expected {
                "inject" => {
                    assert_eq!(response["allowed"], true);
                    assert_eq!(response["patchType"], "JSONPatch");
                    let patched = common::apply(&pod, &decode_patch(response));
                    assert_eq!(
                        patched["metadata"]["annotations"]["dind-injector.io/status"], "injected",
                        "{name}"
                    );
                }
                "skip" => {
                    assert_eq!(response["allowed"], true, "{name}");
                    assert!(
                        response.get("patch").is_none(),
                        "{name}: a skip has no patch"
                    );
                }
                _ => {
                    assert_eq!(response["allowed"], false, "{name}");
                    assert_eq!(response["status"]["code"], 403);
                    assert!(response["status"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()));
                }
            }
        }
    }
    let metrics = server.metrics_text().await;
    for line in [
        r#"dind_injector_reviews_total{outcome="injected",reason=""} 6"#,
        r#"dind_injector_reviews_total{outcome="skipped",reason="own-daemon"} 2"#,
        r#"dind_injector_reviews_total{outcome="denied",reason="invalid-annotation"} 2"#,
        r#"dind_injector_reviews_total{outcome="denied",reason="host-network"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let log = server
        .log_with(&[r#""uid":"uid-job-pod-H2""#, r#""owner":"Job/ci-runner""#])
        .await;
    assert!(
        log.contains(r#""uid":"uid-job-pod-H2""#) && log.contains(r#""owner":"Job/ci-runner""#),
        "{log}"
    );
    // The shipped dashboard queries only series this server exports.
    let dashboard =
        std::fs::read_to_string(common::root().join("manifests/grafana/dind-injector.json"))
            .expect("dashboard");
    let queried: std::collections::BTreeSet<&str> = dashboard
        .match_indices("dind_injector_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(
        queried.len() >= 8,
        "too few metrics found in the dashboard: {queried:?}"
    );
    for name in queried {
        let exported = metrics.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(
            exported,
            "the dashboard queries {name}, which the server does not export:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1beta1_and_dry_run_are_answered_in_kind() {
    let server = Server::start(&[]);
    let mut conn = connect(server.addr, &server.ca(), Proto::H2)
        .await
        .expect("connect");
    let mut review = review_for("admission.k8s.io/v1beta1", "beta", &fixture("job-pod"));
    review["request"]["dryRun"] = json!(true);
    let reply = conn.review(&review).await.expect("review");
    let answer = reply.json();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(answer["response"]["uid"], "beta");
    assert_eq!(
        answer["response"]["patchType"], "JSONPatch",
        "dry runs get the same answer"
    );
}

/// Each bad input gets its precise status, and the server answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_status_and_breaks_nothing() {
    let server = Server::start(&["--max-body-bytes", "3145728"]);
    let ca = server.ca();
    let runner = fixture("job-pod");
    let with_object = |object: Value| review_for(V1, "bad", &object);
    let mut deployment = review_for(V1, "dep", &json!({"kind": "Deployment"}));
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut no_containers = runner.clone();
    no_containers["spec"]["containers"] = json!([]);
    let mut spec_string = runner.clone();
    spec_string["spec"] = json!("oops");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    // Oversized bodies over HTTP/1.1 are answered before they are read, so
    // the client must read while it writes: raw requests, with a declared
    // length and with chunks (no length to check up front).
    let head = "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let declared = format!("{head}Content-Length: {}\r\n\r\n", 3 * 1024 * 1024 + 1);
    let answer = common::server::raw_http1(server.addr, &ca, declared.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let mut chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1024 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 1024 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    let answer = common::server::raw_http1(server.addr, &ca, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_alive(&server).await;
    let json = Some("application/json");
    // (what, method, content type, body, expected status, expected text)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "POST",
            json,
            b"{\"apiVersion\": ".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "invalid UTF-8",
            "POST",
            json,
            vec![b'"', 0xff, 0xfe, b'"'],
            400,
            "not valid JSON",
        ),
        ("deep nesting", "POST", json, deep, 400, "recursion limit"),
        (
            "not a review",
            "POST",
            json,
            b"{\"kind\":\"Pod\"}".to_vec(),
            400,
            "apiVersion is missing",
        ),
        (
            "no uid",
            "POST",
            json,
            serde_json::to_vec(
                &json!({"apiVersion": V1, "kind": "AdmissionReview", "request": {}}),
            )
            .unwrap(),
            400,
            "request.uid",
        ),
        (
            "too large",
            "POST",
            json,
            big,
            413,
            "larger than 3145728 bytes",
        ),
        (
            "wrong content type",
            "POST",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "application/json",
        ),
        (
            "no content type",
            "POST",
            None,
            b"{}".to_vec(),
            415,
            "got none",
        ),
        ("GET /mutate", "GET", None, vec![], 405, ""),
        (
            "unknown path",
            "POST",
            json,
            b"{}".to_vec(),
            404,
            "POST /mutate",
        ),
        (
            "a Deployment",
            "POST",
            json,
            serde_json::to_vec(&deployment).unwrap(),
            200,
            "mutates Pods only; got apps/v1 Deployment",
        ),
        (
            "object null",
            "POST",
            json,
            serde_json::to_vec(&with_object(Value::Null)).unwrap(),
            200,
            "without an object",
        ),
        (
            "no containers",
            "POST",
            json,
            serde_json::to_vec(&with_object(no_containers)).unwrap(),
            200,
            "spec.containers is missing or empty",
        ),
        (
            "spec a string",
            "POST",
            json,
            serde_json::to_vec(&with_object(spec_string)).unwrap(),
            200,
            "spec is a string",
        ),
    ];
    for (what, method, ct, body, status, text) in cases {
        for proto in [Proto::H1, Proto::H2] {
            if what == "too large" && proto == Proto::H1 {
                continue; // covered by the raw requests above
            }
            let mut conn = connect(server.addr, &ca, proto).await.expect("connect");
            let path = if what == "unknown path" {
                "/nope"
            } else {
                "/mutate"
            };
            let reply = conn
                .request(method, path, ct, body.clone())
                .await
                .expect(what);
            assert_eq!(reply.status, status, "{what} ({proto:?}): {}", reply.text());
            assert!(
                reply.text().contains(text),
                "{what}: {:?} lacks {text:?}",
                reply.text()
            );
            if status == 200 {
                let response = &reply.json()["response"];
                assert_eq!(response["allowed"], true, "{what}");
                assert!(
                    response.get("patch").is_none(),
                    "{what}: never a patch of a malformed pod"
                );
            }
            assert_alive(&server).await;
        }
    }
    // Not TLS at all: the connection is dropped, the server carries on.
    let mut raw = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert_alive(&server).await;
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"dind_injector_reviews_total{outcome="error",reason="too-large"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_connections_do_not_block_a_real_request() {
    let server = Server::start(&[]);
    let ca = server.ca();
    let mut idle = Vec::new();
    for i in 0..200 {
        let proto = if i % 2 == 0 { Proto::H2 } else { Proto::H1 };
        idle.push(
            connect(server.addr, &ca, proto)
                .await
                .expect("idle connection"),
        );
    }
    // The server counts a connection once its side of the handshake is
    // done, which can be just after the client's: wait for the count.
    let metrics = server
        .metrics_with("dind_injector_open_connections 200")
        .await;
    assert!(
        metrics.contains("dind_injector_open_connections 200"),
        "{metrics}"
    );
    let started = Instant::now();
    let mut conn = connect(server.addr, &ca, Proto::H2).await.expect("connect");
    let reply = conn
        .review(&review_for(V1, "busy", &fixture("job-pod")))
        .await
        .expect("review");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["patchType"], "JSONPatch");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_and_room_comes_back() {
    let server = Server::start(&["--max-connections", "10"]);
    let ca = server.ca();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            connect(server.addr, &ca, Proto::H1)
                .await
                .expect("within the limit"),
        );
    }
    let over = connect(server.addr, &ca, Proto::H1).await;
    assert!(over.is_err(), "the 11th connection must be refused");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let server = Server::start(&[
        "--tls-handshake-timeout",
        "500ms",
        "--header-read-timeout",
        "500ms",
        "--idle-timeout",
        "700ms",
        "--body-timeout",
        "500ms",
    ]);
    let ca = server.ca();

    // TCP connected, no TLS handshake.
    let started = Instant::now();
    let mut raw = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), raw.read(&mut buf))
        .await
        .expect("closed by server");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "handshake timeout took {:?}",
        started.elapsed()
    );

    // Slowloris: half a request head, then nothing.
    let mut tls = tls_connect(server.addr, client_config(&ca, &[b"http/1.1"]))
        .await
        .expect("tls");
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out))
        .await
        .expect("closed by server");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "header timeout took {:?}",
        started.elapsed()
    );

    // A body that never completes: 408.
    let mut tls = tls_connect(server.addr, client_config(&ca, &[b"http/1.1"]))
        .await
        .expect("tls");
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out))
        .await
        .expect("answered");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // Idle HTTP/2: closed after the idle timeout.
    let mut tls = tls_connect(server.addr, client_config(&ca, &[b"h2"]))
        .await
        .expect("tls");
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut sink))
        .await
        .expect("closed when idle");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let server = Server::start(&[]);
    let ca = server.ca();
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (ca, stop) = (ca.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let pod = fixture("job-pod");
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // New connections (to meet the new certificate) and reused ones.
                let proto = if (w + n) % 2 == 0 {
                    Proto::H2
                } else {
                    Proto::H1
                };
                let result = async {
                    let mut conn = connect(addr, &ca, proto).await.map_err(|e| e.to_string())?;
                    for i in 0..3 {
                        let reply = conn
                            .review(&review_for(V1, &format!("rot-{w}-{n}-{i}"), &pod))
                            .await
                            .map_err(|e| e.to_string())?;
                        if reply.status != 200 {
                            return Err(format!("status {}", reply.status));
                        }
                    }
                    Ok::<(), String>(())
                }
                .await;
                match result {
                    Ok(()) => ok += 3,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }
    let old = std::fs::read(server.certs.join("tls.crt")).expect("cert");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        common::server::issue_certs(&server.certs, 30);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.expect("worker");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests made");

    // A new connection now gets the newest certificate.
    let newest = std::fs::read(server.certs.join("tls.crt")).expect("cert");
    assert_ne!(old, newest);
    let tls = tls_connect(addr, client_config(&ca, &[b"h2"]))
        .await
        .expect("tls");
    let served = tls.get_ref().1.peer_certificates().expect("peer cert")[0].clone();
    use rustls::pki_types::pem::PemObject;
    let expected = rustls::pki_types::CertificateDer::from_pem_slice(&newest).expect("pem");
    assert_eq!(
        served.as_ref(),
        expected.as_ref(),
        "the rotated certificate is served"
    );
    assert!(server
        .log_with(&["serving certificate reloaded"])
        .await
        .contains("serving certificate reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let mut server = Server::start(&["--shutdown-delay", "500ms", "--body-timeout", "10s"]);
    let ca = server.ca();
    let body = serde_json::to_vec(&review_for(V1, "in-flight", &fixture("job-pod"))).expect("json");
    let mut tls = tls_connect(server.addr, client_config(&ca, &[b"http/1.1"]))
        .await
        .expect("tls");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(&body[..body.len() / 2])
        .await
        .expect("half the body");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.signal("TERM");
    // During the delay: not ready, but still serving.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut probe = connect(server.addr, &ca, Proto::H1)
        .await
        .expect("still accepting during the delay");
    let ready = probe
        .request("GET", "/readyz", None, vec![])
        .await
        .expect("readyz");
    assert_eq!(ready.status, 503, "readiness goes false first");
    drop(probe);

    tokio::time::sleep(Duration::from_millis(700)).await;
    // The listener is closed now: no new connections.
    assert!(
        connect(server.addr, &ca, Proto::H1).await.is_err(),
        "listener still open"
    );
    // The request in flight completes.
    tls.write_all(&body[body.len() / 2..])
        .await
        .expect("rest of the body");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"uid\":\"in-flight\""), "{text}");
    let status = server
        .wait(Duration::from_secs(5))
        .expect("server exits after the last request");
    assert!(status.success(), "{status:?}");
    // Read once, after the exit: the log writer's lines were flushed
    // before the process ended, the last one included.
    let log = server.log_text();
    assert!(
        log.contains(r#""uid":"in-flight""#) && log.contains(r#""message":"stopped""#),
        "{log}"
    );
}

/// The command `make run` prints works: the example review, through the
/// server, through scripts/show-review.py, shows the injected pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_make_run_example_shows_an_injected_pod() {
    let server = Server::start(&[]);
    let example = common::root().join("examples/admission-review.json");
    let mut conn = connect(server.addr, &server.ca(), Proto::H2)
        .await
        .expect("connect");
    let reply = conn
        .review(&common::read_json(&example))
        .await
        .expect("review");
    assert_eq!(reply.status, 200);
    let mut script = std::process::Command::new("python3")
        .arg(common::root().join("scripts/show-review.py"))
        .arg(&example)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    script
        .stdin
        .take()
        .expect("stdin")
        .write_all(&reply.body)
        .expect("write");
    let out = script.wait_with_output().expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: Value =
        serde_json::from_slice(&out.stdout).expect("the script prints the pod as JSON");
    assert_eq!(
        pod["metadata"]["annotations"]["dind-injector.io/status"],
        "injected"
    );
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["runner", "dind"]);
}

/// `sidecarMode: auto` without any Kubernetes API to ask: classic, said in
/// the log and in the metrics. (Against a real apiserver: the e2e suite.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_without_an_api_falls_back_to_classic() {
    let server = Server::start_with_env(
        &[],
        &[
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
            ("KUBERNETES_SERVICE_HOST", ""),
        ],
    );
    let mut conn = connect(server.addr, &server.ca(), Proto::H2)
        .await
        .expect("connect");
    let reply = conn
        .review(&review_for(V1, "auto", &fixture("job-pod")))
        .await
        .expect("review");
    let patch = decode_patch(&reply.json()["response"]);
    let patched = common::apply(&fixture("job-pod"), &patch);
    let names: Vec<&str> = patched["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["runner", "dind"], "classic: dind is a container");
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"dind_injector_sidecar_mode{mode="classic"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dind_injector_sidecar_mode{mode="native"} 0"#),
        "{metrics}"
    );
    let log = server
        .log_with(&["no answer from the Kubernetes API; using classic"])
        .await;
    assert!(
        log.contains("no answer from the Kubernetes API; using classic"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_mode_is_used_without_asking_the_cluster() {
    let dir = common::temp_dir("native-config");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "sidecarMode: native\n").expect("config");
    let server = Server::start(&["--config", config.to_str().expect("utf8")]);
    let mut conn = connect(server.addr, &server.ca(), Proto::H1)
        .await
        .expect("connect");
    let reply = conn
        .review(&review_for(V1, "native", &fixture("job-pod")))
        .await
        .expect("review");
    let patched = common::apply(
        &fixture("job-pod"),
        &decode_patch(&reply.json()["response"]),
    );
    assert_eq!(
        patched["spec"]["initContainers"].as_array().map(Vec::len),
        Some(3),
        "init, externals, dind"
    );
    assert_eq!(
        patched["spec"]["initContainers"][2]["restartPolicy"],
        "Always"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(r#"dind_injector_sidecar_mode{mode="native"} 1"#),
        "{metrics}"
    );
    assert!(
        !server.log_text().contains("Kubernetes API"),
        "a configured mode asks no API"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `namespaceProfiles` without any Kubernetes API to list namespaces from:
/// `serve` answers no review (it would not know a namespace's profile), and
/// the log says why. Nothing is printed on stdout (the listening line comes
/// only once the list is in); against a real apiserver: the e2e suite.
#[test]
fn namespace_profiles_without_an_api_serve_nothing() {
    let dir = common::temp_dir("ns-profiles");
    common::server::issue_certs(&dir, 30);
    let config = dir.join("config.yaml");
    std::fs::write(&config, "sidecarMode: classic\nnamespaceProfiles: true\n").expect("config");
    let log = dir.join("server.log");
    let mut child = std::process::Command::new(common::bin())
        .arg("serve")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("KUBERNETES_SERVICE_HOST", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let printed = rx.recv_timeout(std::time::Duration::from_secs(3));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        printed.is_err(),
        "serve started answering without the namespaces: {printed:?}\n{text}"
    );
    assert!(
        text.contains("namespaceProfiles: the namespace cache is not being updated")
            && text.contains("no Kubernetes client configuration"),
        "{text}"
    );
}
