"""Deployment tests: the Helm chart and the kustomize manifests, rendered by
the real tools, validated against the strict Kubernetes schema, and checked
for the properties that make the webhook safe to install.

Run by `make deploy-test` (part of `make test`), which builds Helm and
kustomize from their Go modules and passes their paths in the environment:
HELM, KUSTOMIZE, DIND_INJECTOR (the binary, to check rendered configs and make
dev certificates) and KUBERNETES_SCHEMA_VERSION. A missing tool is a failure,
never a skip.
"""

import base64
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests" / "helm" / "dind-injector"
KUSTOMIZE_DIR = ROOT / "manifests"
DASHBOARD = ROOT / "manifests" / "grafana" / "dind-injector.json"
SCHEMA_VERSION = os.environ.get("KUBERNETES_SCHEMA_VERSION", "1.37.0")
KUBE_VERSION = "1.37.0"
RELEASE, RELEASE_NS = "ci", "ci-system"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
# Kinds whose CRDs are not in the Kubernetes schema: their key fields are
# asserted by the tests below instead.
CRD_KINDS = {"Certificate", "Issuer", "ClusterIssuer", "ServiceMonitor"}
# Every metric the server exports (src/webhook/serve/metrics.rs).
KNOWN_METRICS = {
    "dind_injector_reviews_total",
    "dind_injector_review_duration_seconds_bucket",
    "dind_injector_review_duration_seconds_sum",
    "dind_injector_review_duration_seconds_count",
    "dind_injector_certificate_expiry_timestamp_seconds",
    "dind_injector_open_connections",
    "dind_injector_connections_total",
    "dind_injector_ready",
    "dind_injector_build_info",
    "dind_injector_sidecar_mode",
}


def tool(name: str) -> str:
    path = os.environ.get(name)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not set to an executable ({path!r}): run through `make deploy-test`")
    return path


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kw)


def load_all(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


# --- rendering ---------------------------------------------------------------

# Non-default value sets. Each is rendered, validated and checked like the
# defaults; `expect` says what the checks should find.
VALUE_SETS = {
    "defaults": {},
    "cert-manager": {"certificates": {"certManager": {"enabled": True}}},
    "cert-manager-cluster-issuer": {
        "certificates": {
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"},
                "duration": "720h",
                "renewBefore": "240h",
            }
        }
    },
    "native": {"config": {"sidecarMode": "native"}},
    "classic": {"config": {"sidecarMode": "classic"}},
    "custom-images": {
        "image": {"repository": "registry.example.com/platform/dind-injector", "tag": "v9.9.9", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "config": {
            "dind": {"image": "registry.example.com/mirror/docker:27.5.1-dind", "imagePullPolicy": "Always"},
            "knownImages": [
                {"image": "registry.example.com/runners/*", "entrypoint": ["/entrypoint.sh", "run"]},
            ],
        },
    },
    "image-digest": {"image": {"digest": "sha256:" + "a" * 64}},
    "injector-image-override": {
        "config": {"injector": {"image": "registry.example.com/other/dind-injector:v0.1.0", "imagePullPolicy": "Never"}}
    },
    "resources": {
        "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}},
        "config": {
            "dind": {
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}},
                "storageSizeLimit": "50Gi",
                "dockerdArgs": ["--max-concurrent-downloads=6"],
                "registryMirrors": ["https://mirror.example.com"],
            },
            "minTerminationGracePeriodSeconds": 7200,
            "runner": {"drainTimeoutSeconds": 7000, "dockerWaitSeconds": 600},
        },
    },
    "failure-policy-ignore": {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5}},
    "monitoring": {
        "metrics": {"port": 9102, "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "dashboard": {"enabled": True, "namespace": "monitoring"},
    },
    "no-match-conditions": {"webhook": {"matchConditions": {"enabled": False}}},
    "dirs-disabled": {"config": {"runner": {"workDir": "", "externalsDir": None}}},
    "scheduling": {
        "replicaCount": 3,
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "podDisruptionBudget": {"minAvailable": 2},
        "server": {"logFormat": "text", "shutdownDelay": "10s", "extraArgs": ["--max-connections=2048"],
                   "extraEnv": [{"name": "RUST_LOG", "value": "info"}]},
        "terminationGracePeriodSeconds": 45,
        "webhook": {
            "excludedNamespaces": ["kube-system", "kube-public", "kube-node-lease", "monitoring"],
            "namespaceSelectorExpressions": [{"key": "ci", "operator": "In", "values": ["true"]}],
        },
        "serviceAccount": {"name": "webhook", "annotations": {"example.com/role": "x"}},
        "fullnameOverride": "dind",
    },
    "allow-host-network": {"config": {"allowHostNetwork": True}},
    "tests-off": {"tests": {"enabled": False}},
    "network-policy": {"networkPolicy": {"enabled": True, "apiserverCIDRs": ["10.0.0.0/24"]}},
}


def render_chart(values: dict, tmp_path: pathlib.Path, kube_version: str = KUBE_VERSION, extra=()) -> list:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--kube-version", kube_version, "--values", str(values_file), *extra])
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return load_all(proc.stdout)


def kustomize(path: pathlib.Path) -> list:
    proc = run([tool("KUSTOMIZE"), "build", str(path)])
    assert proc.returncode == 0, f"kustomize build {path} failed:\n{proc.stderr}"
    return load_all(proc.stdout)


@pytest.fixture(scope="session")
def dev_manifests(tmp_path_factory) -> pathlib.Path:
    """A copy of manifests/ with dev certificates made by `dind-injector certs`,
    as `make dev-certs` makes them."""
    tree = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(KUSTOMIZE_DIR, tree, ignore=shutil.ignore_patterns("certs"))
    proc = run([tool("DIND_INJECTOR"), "certs", "--out", str(tree / "overlays" / "dev" / "certs"),
                "--san", "dind-injector.dind-injector.svc", "--san", "dind-injector.dind-injector.svc.cluster.local"])
    assert proc.returncode == 0, proc.stderr
    return tree


KUSTOMIZATIONS = ["base", "overlays/cert-manager", "overlays/dev"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, dev_manifests) -> dict:
    """Every rendering, by name: chart value sets and kustomizations."""
    out = {}
    for name, values in VALUE_SETS.items():
        out[f"helm:{name}"] = render_chart(values, tmp_path_factory.mktemp(name))
    for k in KUSTOMIZATIONS:
        out[f"kustomize:{k}"] = kustomize(dev_manifests / k)
    return out


ALL = [f"helm:{n}" for n in VALUE_SETS] + [f"kustomize:{k}" for k in KUSTOMIZATIONS]


def namespace_of(name: str) -> str:
    return "dind-injector" if name.startswith("kustomize:") else RELEASE_NS


def values_of(name: str) -> dict:
    return VALUE_SETS.get(name.removeprefix("helm:"), {}) if name.startswith("helm:") else {}


def get(d: dict, path: str, default=None):
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def one(objs: list, kind: str, hook: bool = False) -> dict:
    found = [o for o in objs if o["kind"] == kind and bool(get(o, "metadata.annotations", {}).get("helm.sh/hook")) == hook]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def webhook_pod_spec(objs: list) -> dict:
    return one(objs, "Deployment")["spec"]["template"]["spec"]


def rendered_config(objs: list) -> dict:
    cms = [o for o in objs if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})]
    assert len(cms) == 1, [o["metadata"]["name"] for o in cms]
    return yaml.safe_load(cms[0]["data"]["config.yaml"])


# --- the tools and the chart as a whole -----------------------------------------


def test_helm_lint_strict():
    proc = run([tool("HELM"), "lint", "--strict", str(CHART), "--namespace", RELEASE_NS, "--kube-version", KUBE_VERSION])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if n != "defaults"])
def test_helm_lint_with_values(name, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUE_SETS[name]))
    proc = run([tool("HELM"), "lint", "--strict", str(CHART), "--namespace", RELEASE_NS,
                "--kube-version", KUBE_VERSION, "--values", str(values_file)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


BAD_VALUES = {
    "unknown top-level key": {"replicas": 3},
    "unknown config field": {"config": {"sidecarmode": "native"}},
    "sidecarMode": {"config": {"sidecarMode": "sidecar"}},
    "failurePolicy": {"webhook": {"failurePolicy": "Retry"}},
    "timeout above 10": {"webhook": {"timeoutSeconds": 11}},
    "timeout 0": {"webhook": {"timeoutSeconds": 0}},
    "image pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "dind pull policy": {"config": {"dind": {"imagePullPolicy": "always"}}},
    "quantity": {"config": {"dind": {"storageSizeLimit": "20GB"}}},
    "relative workDir": {"config": {"runner": {"workDir": "work"}}},
    "dockerd arg not a flag": {"config": {"dind": {"dockerdArgs": ["debug"]}}},
    "grace below shutdown": {"terminationGracePeriodSeconds": 20},
    "log format": {"server": {"logFormat": "xml"}},
    "digest": {"image": {"digest": "latest"}},
    "issuer kind": {"certificates": {"certManager": {"issuerRef": {"name": "x", "kind": "Vault"}}}},
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects(case, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(BAD_VALUES[case]))
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--values", str(values_file)])
    assert proc.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_schema_is_strict_everywhere():
    """Every object in values.schema.json without free-form content closes its
    properties, so a typo in any value is an error."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_form = {"global", "affinity", "podAnnotations", "podLabels", "nodeSelector", "labels", "annotations",
                 "requests", "limits"}

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path} is open"
            for key, sub in node.get("properties", {}).items():
                if key not in free_form:
                    walk(sub, f"{path}.{key}")
            for key in ("items", "anyOf"):
                sub = node.get(key)
                for i, s in enumerate(sub if isinstance(sub, list) else [sub] if sub else []):
                    walk(s, f"{path}.{key}[{i}]")

    walk(schema, "values")
    assert schema["properties"]["webhook"]["properties"]["timeoutSeconds"]["maximum"] == 10


def test_chart_defaults_match_binary_defaults():
    """values.yaml's config block is the binary's default config, field by
    field, as documented in docs/configuration.md (injector.image aside: the
    chart fills in its own image)."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    block = re.search(r"## Fields and defaults\s+```yaml\n(.*?)```", doc, re.S).group(1)
    documented = yaml.safe_load(block)
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    base = yaml.safe_load((KUSTOMIZE_DIR / "base" / "config.yaml").read_text())
    assert chart["injector"]["image"] == ""
    for cfg in (documented, base):
        cfg = copy.deepcopy(cfg)
        assert cfg["injector"]["image"] == "ghcr.io/dind-injector/dind-injector:v0.1.0"
        cfg["injector"]["image"] = ""
        assert cfg == chart
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    cargo_version = re.search(r'^version = "(.*)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    assert app_version == f"v{cargo_version}", "Chart appVersion must follow Cargo.toml's version"


# --- every rendering: schema and safety properties --------------------------------


@pytest.mark.parametrize("name", ALL)
def test_strict_kubernetes_schema(name, rendered):
    validated, errors = 0, []
    for obj in rendered[name]:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: no schema (add it to CRD_KINDS and assert its fields?)")
    assert not errors, "\n".join(errors)
    assert validated >= 8, f"only {validated} objects validated"


@pytest.mark.parametrize("name", ALL)
def test_webhook_configuration(name, rendered):
    objs, ns, values = rendered[name], namespace_of(name), values_of(name)
    mwc = one(objs, "MutatingWebhookConfiguration")
    assert len(mwc["webhooks"]) == 1
    wh = mwc["webhooks"][0]
    assert wh["objectSelector"] == {"matchLabels": {"runner": "true"}}
    assert wh["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                            "resources": ["pods"], "scope": "Namespaced"}]
    assert wh["sideEffects"] == "None"
    assert wh["admissionReviewVersions"] == ["v1"]
    assert wh["reinvocationPolicy"] == "IfNeeded"
    assert 1 <= wh["timeoutSeconds"] <= 10
    assert wh["failurePolicy"] == get(values, "webhook.failurePolicy", "Fail")
    assert wh["timeoutSeconds"] == get(values, "webhook.timeoutSeconds", 10)
    # Namespaces: the webhook's own and the system ones are never selected,
    # and a namespace can opt out with a label.
    exprs = wh["namespaceSelector"]["matchExpressions"]
    by_key = {e["key"]: e for e in exprs}
    names = by_key["kubernetes.io/metadata.name"]
    assert names["operator"] == "NotIn"
    assert {ns} | SYSTEM_NAMESPACES <= set(names["values"])
    assert by_key["dind-injector.io/injection"] == {"key": "dind-injector.io/injection", "operator": "NotIn",
                                                   "values": ["disabled"]}
    assert "matchLabels" not in wh["namespaceSelector"]
    # The service behind it.
    svc = wh["clientConfig"]["service"]
    assert svc["path"] == "/mutate" and svc["port"] == 443 and svc["namespace"] == ns
    service = one(objs, "Service")
    assert service["metadata"]["name"] == svc["name"]
    https = [p for p in service["spec"]["ports"] if p["port"] == 443]
    assert https and https[0]["targetPort"] == "https"
    container = webhook_pod_spec(objs)["containers"][0]
    assert {"name": "https", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    # matchConditions: on unless turned off; they skip what the handler skips anyway.
    conditions = wh.get("matchConditions")
    if get(values, "webhook.matchConditions.enabled", True):
        assert [c["name"] for c in conditions] == ["not-already-injected", "not-opted-out"]
        assert "dind-injector.io/status" in conditions[0]["expression"]
    else:
        assert conditions is None


@pytest.mark.parametrize("name", ALL)
def test_certificates(name, rendered):
    objs, ns, values = rendered[name], namespace_of(name), values_of(name)
    mwc = one(objs, "MutatingWebhookConfiguration")
    client = mwc["webhooks"][0]["clientConfig"]
    secret_name = webhook_pod_spec(objs)["volumes"][1]["secret"]["secretName"]
    uses_cert_manager = name == "kustomize:overlays/cert-manager" or get(values, "certificates.certManager.enabled")
    if uses_cert_manager:
        inject_from = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        cert_ns, cert_name = inject_from.split("/")
        cert = [o for o in objs if o["kind"] == "Certificate" and o["metadata"]["name"] == cert_name]
        assert len(cert) == 1 and cert_ns == ns == cert[0]["metadata"]["namespace"]
        spec = cert[0]["spec"]
        assert spec["secretName"] == secret_name
        svc = mwc["webhooks"][0]["clientConfig"]["service"]["name"]
        assert f"{svc}.{ns}.svc" in spec["dnsNames"]
        assert "server auth" in spec["usages"]
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        assert cert[0]["apiVersion"] == "cert-manager.io/v1"
        issuer_ref = get(values, "certificates.certManager.issuerRef")
        if issuer_ref:
            assert spec["issuerRef"]["name"] == issuer_ref["name"]
            assert spec["issuerRef"]["kind"] == issuer_ref["kind"]
            assert not [o for o in objs if o["kind"] == "Issuer"]
        else:
            issuers = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Issuer"}
            ca_issuer = issuers[spec["issuerRef"]["name"]]
            ca_cert = [o for o in objs if o["kind"] == "Certificate" and o["spec"].get("isCA")]
            assert len(ca_cert) == 1 and ca_issuer["spec"]["ca"]["secretName"] == ca_cert[0]["spec"]["secretName"]
            assert "selfSigned" in issuers[ca_cert[0]["spec"]["issuerRef"]["name"]]["spec"]
        assert "caBundle" not in client
        assert not [o for o in objs if o["kind"] == "Secret"]
    elif name == "kustomize:base":
        assert "caBundle" not in client  # an overlay supplies the certificate
    else:
        secret = one(objs, "Secret")
        assert secret["metadata"]["name"] == secret_name
        assert secret["type"] == "kubernetes.io/tls"
        ca_pem = base64.b64decode(secret["data"]["ca.crt"])
        assert base64.b64decode(client["caBundle"]) == ca_pem
        assert ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("kustomize:base", "kustomize:overlays/cert-manager")
                                  and not get(values_of(n), "certificates.certManager.enabled")])
def test_serving_certificate_is_signed_by_ca_bundle(name, rendered, tmp_path):
    """The Secret's certificate chains to the caBundle and names the Service."""
    objs, ns = rendered[name], namespace_of(name)
    secret = one(objs, "Secret")
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    proc = run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")]).stdout
    svc = one(objs, "Service")["metadata"]["name"]
    assert f"DNS:{svc}.{ns}.svc" in text, text


def check_restricted(spec: dict, where: str):
    """The Pod Security `restricted` level, as far as these pods can break it."""
    psc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{where}: {key}"
    for v in spec.get("volumes", []):
        assert set(v) - {"name"} <= {"configMap", "secret", "emptyDir", "projected", "downwardAPI",
                                     "persistentVolumeClaim", "ephemeral", "csi"}, f"{where}: volume {v}"
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}: allowPrivilegeEscalation"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}: capabilities"
        assert not sc.get("capabilities", {}).get("add"), f"{where}/{c['name']}: capabilities added"
        assert not sc.get("privileged"), f"{where}/{c['name']}: privileged"
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}/{c['name']}: runAsNonRoot"
        assert sc.get("runAsUser", psc.get("runAsUser")) not in (0, None), f"{where}/{c['name']}: runAsUser"
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}/{c['name']}: seccomp"
        assert not c.get("ports") or all("hostPort" not in p for p in c["ports"])


@pytest.mark.parametrize("name", ALL)
def test_deployment(name, rendered):
    objs, values = rendered[name], values_of(name)
    deployment = one(objs, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["replicas"] == values.get("replicaCount", 2)
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    check_restricted(pod, "webhook")
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert len(pod["containers"]) == 1
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["args"][0] == "serve"
    assert "--config=/etc/dind-injector/config.yaml" in c["args"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/dind-injector/config.yaml"]["subPath"] == "config.yaml"
    assert "subPath" not in mounts["/etc/dind-injector/tls"], "a subPath mount never sees a rotated certificate"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "configMap" in volumes[mounts["/etc/dind-injector/config.yaml"]["name"]]
    assert "secret" in volumes[mounts["/etc/dind-injector/tls"]["name"]]
    # Probes on the real endpoints, on the metrics port (a flood of the
    # webhook port cannot starve them).
    assert c["readinessProbe"]["httpGet"] == {"scheme": "HTTP", "path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"scheme": "HTTP", "path": "/healthz", "port": "metrics"}
    metrics_port = get(values, "metrics.port", 9090)
    assert {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"} in c["ports"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    # Grace: more than shutdown-delay (5s) + shutdown-grace (20s).
    delay = int(get(values, "server.shutdownDelay", "5s").rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > delay + 20
    # Spread and anti-affinity, both soft.
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {"topology.kubernetes.io/zone",
                                                                           "kubernetes.io/hostname"}
    assert all(t["whenUnsatisfiable"] == "ScheduleAnyway" for t in pod["topologySpreadConstraints"])
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    for t in pod["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"] == selector
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert one(objs, "Service")["spec"]["selector"] == selector
    if "priorityClassName" in values:
        assert pod["priorityClassName"] == values["priorityClassName"]
    else:
        assert "priorityClassName" not in pod
    # Pod disruption budget over the same pods.
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["minAvailable"] == get(values, "podDisruptionBudget.minAvailable", 1)
    assert pdb["spec"]["minAvailable"] < spec["replicas"]
    # The service account the auto mode reads the cluster with.
    sa = one(objs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("name", ALL)
def test_rbac_is_exactly_what_auto_detection_needs(name, rendered):
    objs, ns = rendered[name], namespace_of(name)
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    role = one(objs, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {"nonResourceURLs": ["/version"], "verbs": ["get"]},
    ]
    assert "aggregationRule" not in role
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]
    flat = json.dumps([role["rules"]])
    assert "*" not in flat


@pytest.mark.parametrize("name", ALL)
def test_config_uses_the_webhook_image_and_is_valid_for_the_binary(name, rendered, tmp_path):
    """The injected init container runs the webhook's own image, and the
    rendered config file is accepted by the real binary (unknown fields and
    invalid values are errors there)."""
    objs, values = rendered[name], values_of(name)
    config = rendered_config(objs)
    image = webhook_pod_spec(objs)["containers"][0]["image"]
    override = get(values, "config.injector.image")
    assert config["injector"]["image"] == (override or image)
    if get(values, "image.digest"):
        assert image.endswith("@" + values["image"]["digest"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    proc = run([tool("DIND_INJECTOR"), "inject", "--config", str(config_file), "-f", str(ROOT / "examples" / "runner-job.yaml")])
    assert proc.returncode == 0, proc.stderr
    injected = load_all(proc.stdout)
    pod = injected[0]["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    assert init["dind-injector-init"]["image"] == config["injector"]["image"]
    assert init["dind-injector-init"]["command"][0] == "/usr/local/bin/dind-injector"
    dind = [c for c in pod.get("containers", []) + pod["initContainers"] if c["name"] == "dind"]
    assert dind and dind[0]["image"] == config["dind"]["image"]
    mode = config["sidecarMode"]
    in_init = "dind" in init
    assert in_init == (mode == "native"), f"sidecarMode {mode}: dind in initContainers={in_init}"


def test_rendered_config_values(rendered):
    defaults = rendered_config(rendered["helm:defaults"])
    assert defaults["sidecarMode"] == "auto"
    disabled = rendered_config(rendered["helm:dirs-disabled"])["runner"]
    assert disabled["workDir"] is None and disabled["externalsDir"] is None
    res = rendered_config(rendered["helm:resources"])["dind"]
    assert res["storageSizeLimit"] == "50Gi" and res["resources"]["limits"] == {"memory": "8Gi"}
    assert rendered_config(rendered["helm:native"])["sidecarMode"] == "native"
    assert rendered_config(rendered["kustomize:base"])["sidecarMode"] == "auto"


def test_config_change_rolls_the_deployment(rendered):
    def checksum(name):
        return one(rendered[name], "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum("helm:defaults") != checksum("helm:native")
    assert checksum("helm:defaults") == checksum("helm:failure-policy-ignore")


def test_custom_values_reach_the_objects(rendered):
    objs = rendered["helm:scheduling"]
    pod = webhook_pod_spec(objs)
    c = pod["containers"][0]
    assert one(objs, "Deployment")["metadata"]["name"] == "dind"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "--max-connections=2048" in c["args"] and "--log-format=text" in c["args"]
    assert "--shutdown-delay=10s" in c["args"]
    assert c["env"] == [{"name": "RUST_LOG", "value": "info"}]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert one(objs, "ServiceAccount")["metadata"]["name"] == "webhook"
    wh = one(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    exprs = wh["namespaceSelector"]["matchExpressions"]
    assert {"key": "ci", "operator": "In", "values": ["true"]} in exprs
    assert "monitoring" in exprs[0]["values"] and exprs[0]["values"].count(RELEASE_NS) == 1
    custom = webhook_pod_spec(rendered["helm:custom-images"])
    assert custom["containers"][0]["image"] == "registry.example.com/platform/dind-injector:v9.9.9"
    assert custom["containers"][0]["imagePullPolicy"] == "Always"
    assert custom["imagePullSecrets"] == [{"name": "regcred"}]
    res = webhook_pod_spec(rendered["helm:resources"])["containers"][0]["resources"]
    assert res == VALUE_SETS["resources"]["resources"]


def test_match_conditions_left_out_before_1_30(tmp_path):
    objs = render_chart({}, tmp_path, kube_version="1.29.4")
    wh = one(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert "matchConditions" not in wh
    objs = render_chart({}, tmp_path, kube_version="1.30.0")
    assert one(objs, "MutatingWebhookConfiguration")["webhooks"][0]["matchConditions"]


def test_helm_assumes_a_current_kubernetes_without_kube_version():
    """The Helm built by `make tools` carries its release's Kubernetes version
    (like a release binary); a bare `go install` would assume 1.20 and refuse
    the chart (kubeVersion >= 1.28)."""
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS])
    assert proc.returncode == 0, proc.stderr
    wh = one(load_all(proc.stdout), "MutatingWebhookConfiguration")["webhooks"][0]
    assert wh["matchConditions"]


def test_null_from_the_command_line_disables_a_directory():
    """`--set x=null` removes the key from Helm's merged values; the chart
    must render null (disabled), not fall back to the binary's default."""
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--set", "config.runner.workDir=null", "--set", "config.dind.storageSizeLimit=null"])
    assert proc.returncode == 0, proc.stderr
    config = rendered_config(load_all(proc.stdout))
    assert config["runner"]["workDir"] is None
    assert config["runner"]["externalsDir"] == "/home/runner/externals"
    assert config["dind"]["storageSizeLimit"] is None


def test_optional_objects(rendered):
    defaults = rendered["helm:defaults"]
    assert not [o for o in defaults if o["kind"] == "ServiceMonitor"]
    assert not [o for o in defaults if o["kind"] == "ConfigMap" and "grafana_dashboard" in get(o, "metadata.labels", {})]
    objs = rendered["helm:monitoring"]
    sm = one(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http",
                                        "interval": "30s", "scrapeTimeout": "10s"}]
    assert sm["spec"]["selector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    service_ports = {p["name"]: p for p in one(objs, "Service")["spec"]["ports"]}
    assert service_ports["metrics"]["port"] == 9102
    dashboards = [o for o in objs if o["kind"] == "ConfigMap" and get(o, "metadata.labels", {}).get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["namespace"] == "monitoring"
    assert json.loads(dashboards[0]["data"]["dind-injector.json"]) == json.loads(DASHBOARD.read_text())
    assert not [o for o in rendered["helm:tests-off"] if get(o, "metadata.annotations", {}).get("helm.sh/hook")]


def test_network_policy(rendered):
    """Off by default; when on: reviews from the apiserver's addresses only,
    metrics (and probes) from the monitoring namespace."""
    assert not [o for o in rendered["helm:defaults"] if o["kind"] == "NetworkPolicy"]
    objs = rendered["helm:network-policy"]
    np = one(objs, "NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert np["spec"]["policyTypes"] == ["Ingress"]
    reviews, metrics = np["spec"]["ingress"]
    assert reviews == {"ports": [{"port": "https", "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}],
                       "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}


def test_helm_test_hook(rendered):
    objs = rendered["helm:defaults"]
    pod = one(objs, "Pod", hook=True)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    check_restricted(spec, "helm test")
    c = spec["containers"][0]
    assert c["image"] == webhook_pod_spec(objs)["containers"][0]["image"]
    assert c["args"][0] == "inject" and "-f" in c["args"]
    cm = one(objs, "ConfigMap", hook=True)
    sample = yaml.safe_load(cm["data"]["runner-pod.yaml"])
    assert sample["metadata"]["labels"] == {"runner": "true"}
    kubernetes_validate.validate(sample, SCHEMA_VERSION, strict=True)
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_cm = [o for o in objs if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})][0]
    assert volumes["config"]["configMap"]["name"] == config_cm["metadata"]["name"]
    assert volumes["test"]["configMap"]["name"] == cm["metadata"]["name"]


def test_helm_test_sample_is_injected_by_the_binary(rendered, tmp_path):
    """What `helm test` runs in the cluster, run here with the same binary."""
    objs = rendered["helm:defaults"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(rendered_config(objs)))
    (tmp_path / "pod.yaml").write_text(one(objs, "ConfigMap", hook=True)["data"]["runner-pod.yaml"])
    c = one(objs, "Pod", hook=True)["spec"]["containers"][0]
    args = [a.replace("/etc/dind-injector/config.yaml", str(tmp_path / "config.yaml"))
            .replace("/test/runner-pod.yaml", str(tmp_path / "pod.yaml")) for a in c["args"]]
    proc = run([tool("DIND_INJECTOR"), *args])
    assert proc.returncode == 0, proc.stderr
    assert "injected" in proc.stderr
    pod = load_all(proc.stdout)[0]
    assert pod["metadata"]["annotations"]["dind-injector.io/status"] == "injected"


def test_webhook_namespace_is_restricted_in_kustomize(rendered):
    for k in KUSTOMIZATIONS:
        ns = one(rendered[f"kustomize:{k}"], "Namespace")
        assert ns["metadata"]["name"] == "dind-injector"
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(o["metadata"].get("namespace", "dind-injector") == "dind-injector" for o in rendered[f"kustomize:{k}"])


def test_dev_overlay_ca_bundle_is_the_dev_ca(rendered, dev_manifests):
    objs = rendered["kustomize:overlays/dev"]
    ca = (dev_manifests / "overlays" / "dev" / "certs" / "ca.crt").read_bytes()
    wh = one(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert base64.b64decode(wh["clientConfig"]["caBundle"]) == ca
    secret = one(objs, "Secret")
    assert "ca.key" not in secret["data"], "the CA key must stay on the developer's machine"


def test_no_match_conditions_component(dev_manifests):
    overlay = dev_manifests / "overlays" / "old-cluster"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../cert-manager"], "components": ["../../components/no-match-conditions"]}))
    objs = kustomize(overlay)
    mwc = one(objs, "MutatingWebhookConfiguration")
    assert "matchConditions" not in mwc["webhooks"][0]
    assert mwc["webhooks"][0]["objectSelector"] == {"matchLabels": {"runner": "true"}}
    kubernetes_validate.validate(mwc, SCHEMA_VERSION, strict=True)


def test_cert_manager_overlay_names_match_the_service(rendered):
    objs = rendered["kustomize:overlays/cert-manager"]
    cert = [o for o in objs if o["kind"] == "Certificate" and not o["spec"].get("isCA")][0]
    assert cert["spec"]["dnsNames"] == ["dind-injector.dind-injector.svc", "dind-injector.dind-injector.svc.cluster.local"]


@pytest.mark.parametrize("values,kube,expected,unexpected", [
    ({}, KUBE_VERSION, ["pod-security.kubernetes.io/enforce=privileged", 'runner: "true"', "helm test ci -n ci-system",
                        "--dry-run=server", "failurePolicy is Fail", "generated by the chart",
                        "ci-system, kube-system, kube-public, kube-node-lease"], ["WITHOUT Docker", "older than 1.30"]),
    ({"webhook": {"failurePolicy": "Ignore"}, "certificates": {"certManager": {"enabled": True}}}, "1.29.0",
     ["WITHOUT Docker", "older than 1.30"], ["generated by the chart", "failurePolicy is Fail"]),
])
def test_notes(values, kube, expected, unexpected, tmp_path):
    """NOTES.txt renders (helm template skips it, so it is rendered through a
    copy of the chart that wraps it in a template) and says what to do."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_test.tpl").write_text('{{- define "test.notes" -}}\n' + notes + "\n{{- end -}}\n")
    (chart / "templates" / "zz-notes-test.yaml").write_text('notes: {{ include "test.notes" . | toJson }}\n')
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = run([tool("HELM"), "template", RELEASE, str(chart), "--namespace", RELEASE_NS, "--kube-version", kube,
                "--values", str(values_file), "--show-only", "templates/zz-notes-test.yaml"])
    assert proc.returncode == 0, proc.stderr
    text = yaml.safe_load(proc.stdout)["notes"]
    for s in expected:
        assert s in text, f"{s!r} not in NOTES:\n{text}"
    for s in unexpected:
        assert s not in text, f"{s!r} in NOTES:\n{text}"


# --- the dashboard ----------------------------------------------------------------


def test_dashboard():
    text = DASHBOARD.read_text()
    assert (CHART / "dashboards" / "dind-injector.json").read_text() == text, \
        "the chart's copy of the dashboard differs from manifests/grafana/dind-injector.json"
    dash = json.loads(text)
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = set(re.findall(r"\bdind_injector_[a-z_]+", " ".join(exprs)))
    assert used <= KNOWN_METRICS, used - KNOWN_METRICS
    assert {"dind_injector_reviews_total", "dind_injector_review_duration_seconds_bucket",
            "dind_injector_certificate_expiry_timestamp_seconds", "dind_injector_open_connections",
            "dind_injector_sidecar_mode"} <= used
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any('outcome="skipped"' in e and "by (reason)" in e for e in exprs)
    assert any("by (outcome)" in e for e in exprs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}"
        for e in (t["expr"] for t in p["targets"]):
            assert e.count("(") == e.count(")") and e.count("{") == e.count("}"), e


def test_policy_delivery_component(dev_manifests):
    """components/policy-delivery: the four admission policies and none of
    the webhook's objects (no Deployment, Service, certificates, config)."""
    overlay = dev_manifests / "overlays" / "policy"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../../base"], "components": ["../../components/policy-delivery"]}))
    objs = kustomize(overlay)
    assert sorted(o["kind"] for o in objs) == [
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for o in objs:
        assert "namespace" not in o["metadata"], f"{o['kind']} is cluster-scoped"
    mutating = one(objs, "MutatingAdmissionPolicy")
    assert mutating["spec"]["failurePolicy"] == "Fail"
    assert mutating["spec"]["reinvocationPolicy"] == "IfNeeded"
    assert mutating["spec"]["matchConstraints"]["objectSelector"] == {"matchLabels": {"runner": "true"}}
    assert {m["patchType"] for m in mutating["spec"]["mutations"]} == {"JSONPatch"}
