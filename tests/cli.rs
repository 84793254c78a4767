//! The offline `inject` command, run as the real binary.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

fn bin() -> Command {
    Command::new(common::bin())
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dind-injector");
    let mut pipe = child.stdin.take().expect("stdin");
    // The command may exit before reading stdin (a bad flag or config): a
    // broken pipe here is that, not a failure of the test.
    if let Err(e) = pipe.write_all(stdin.unwrap_or("").as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML out"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const MULTI: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {runner: "true"}}
data: {a: "1"}
---
apiVersion: batch/v1
kind: Job
metadata: {name: build, namespace: ci}
spec:
  template:
    metadata: {labels: {runner: "true"}}
    spec:
      restartPolicy: Never
      containers:
      - {name: runner, image: "ghcr.io/actions/actions-runner:2.329.0", command: [/home/runner/run.sh]}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.27", futureField: {keep: [1, 2]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: runners}
spec:
  serviceName: runners
  selector: {matchLabels: {app: runners}}
  template:
    metadata: {labels: {app: runners, runner: "true"}}
    spec:
      containers:
      - {name: runner, image: "ghcr.io/actions/actions-runner:2.329.0"}
"#;

#[test]
fn multi_document_manifests_are_injected_where_labelled_and_kept_elsewhere() {
    let out = run(&["inject", "-f", "-"], Some(MULTI));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let input = docs(MULTI)
        .into_iter()
        .filter(|d| !d.is_null())
        .collect::<Vec<_>>();
    let output = docs(&text(&out.stdout));
    assert_eq!(
        output.len(),
        4,
        "empty documents dropped, the rest kept in order"
    );

    assert_eq!(output[0], input[0], "a ConfigMap is not a workload");
    assert_eq!(output[2], input[2], "a non-runner Deployment is untouched");

    let job = &output[1]["spec"]["template"];
    assert_eq!(
        job["metadata"]["annotations"]["dind-injector.io/status"],
        "injected"
    );
    assert_eq!(job["spec"]["containers"][1]["name"], "dind");
    assert_eq!(job["spec"]["shareProcessNamespace"], true);

    let sts = &output[3]["spec"]["template"]["spec"];
    let command = sts["containers"][0]["command"]
        .as_array()
        .expect("command added");
    assert_eq!(
        command.last(),
        Some(&Value::from("/home/runner/run.sh")),
        "known entrypoint"
    );

    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("-: document 2 (Job ci/build): injected (classic mode)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("document 5 (StatefulSet runners): injected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("document 4 (Deployment web): skipped (not-a-runner)"),
        "{stderr}"
    );
}

#[test]
fn files_and_the_native_mode_flag() {
    let dir = common::temp_dir("cli");
    let file = dir.join("job.yaml");
    std::fs::write(&file, MULTI).expect("write");
    let out = run(
        &[
            "inject",
            "-f",
            file.to_str().expect("utf8"),
            "--mode",
            "native",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let output = docs(&text(&out.stdout));
    let spec = &output[1]["spec"]["template"]["spec"];
    assert_eq!(spec["containers"].as_array().map(Vec::len), Some(1));
    let init: Vec<&str> = spec["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        init,
        ["dind-injector-init", "dind-injector-externals", "dind"]
    );
    assert_eq!(spec["initContainers"][2]["restartPolicy"], "Always");
    assert!(spec.get("shareProcessNamespace").is_none());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_denial_prints_nothing_and_names_document_and_annotation() {
    let bad = MULTI.replace(
        "metadata: {labels: {runner: \"true\"}}",
        "metadata: {labels: {runner: \"true\"}, annotations: {dind-injector.io/sidecar-mode: sidecar}}",
    );
    let out = run(&["inject", "-f", "-"], Some(&bad));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no half manifest on stdout");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("document 2 (Job ci/build): denied: annotation dind-injector.io/sidecar-mode: \"sidecar\" is not valid: expected classic, native or auto"),
        "{stderr}"
    );
}

#[test]
fn unreadable_input_is_named() {
    let cases: [(&[&str], Option<&str>, &str); 5] = [
        (
            &["inject", "-f", "/nonexistent/x.yaml"],
            None,
            "cannot read manifest /nonexistent/x.yaml",
        ),
        (
            &["inject", "-f", "-"],
            Some("kind: Pod\n---\nkind: [unclosed\n"),
            "-: document 2 is not valid YAML",
        ),
        (
            &["inject", "-f", "-"],
            Some("kind: Pod\n---\njust a string\n"),
            "document 2 is not a Kubernetes object",
        ),
        (
            &["inject", "-f", "-", "--mode", "hybrid"],
            Some(""),
            "\"hybrid\" is not a sidecar mode",
        ),
        (
            &["inject", "-f", "-", "--config", "/nonexistent/c.yaml"],
            Some(""),
            "cannot read config file /nonexistent/c.yaml",
        ),
    ];
    for (args, stdin, expected) in cases {
        let out = run(args, stdin);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn an_invalid_config_names_the_field() {
    let dir = common::temp_dir("cfg");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "dind:\n  storageSizeLimit: lots\n").expect("write");
    let out = run(
        &[
            "inject",
            "-f",
            "-",
            "--config",
            config.to_str().expect("utf8"),
        ],
        Some(MULTI),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("config field dind.storageSizeLimit: \"lots\""),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_example_in_the_readme_injects() {
    let example = common::root().join("examples/runner-job.yaml");
    let out = run(&["inject", "-f", example.to_str().expect("utf8")], None);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let job = &docs(&text(&out.stdout))[0];
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"]["dind-injector.io/status"],
        "injected"
    );
}
