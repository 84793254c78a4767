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
    "dind_injector_runner_commands_total",
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
    "single-replica": {"replicaCount": 1},
    "webhook-port": {"server": {"port": 10250}, "metrics": {"port": 8080}},
    "profiles": {
        "config": {
            "namespaceProfiles": True,
            "dind": {"registryCertificates": [{"registry": "registry.ci.example:5000", "configMap": "registry-ca"}]},
            "profiles": {
                "big-builds": {
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
                    "storage": {"type": "ephemeral", "storageClassName": "fast-ssd"},
                    "storageSizeLimit": "100Gi",
                    "daemonConfig": {"configMap": "docker-daemon"},
                    "env": [{"name": "DOCKER_BUILDKIT", "value": "1"}],
                    "extraMounts": [{"mountPath": "/etc/ci", "readOnly": True, "volume": {"configMap": {"name": "ci"}}}],
                },
                "in-memory": {"storage": {"medium": "Memory"}, "storageSizeLimit": "8Gi"},
            },
            "defaultProfile": "in-memory",
        },
        "dockerSettings": {
            "namespaces": ["ci-a", "ci-b"],
            "daemonConfigs": {"docker-daemon": {"max-concurrent-downloads": 6, "features": {"buildkit": True}}},
            "registryCAs": {"registry-ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
        },
    },
}

# delivery: policy (admission policies, no webhook objects), rendered and
# checked apart from the webhook renderings above.
POLICY_SETS = {
    "policy": {"delivery": "policy"},
    "policy-classic": {"delivery": "policy", "config": {"sidecarMode": "classic"}},
    "policy-native-selection": {
        "delivery": "policy", "config": {"sidecarMode": "native"},
        "webhook": {"excludedNamespaces": ["kube-system", "monitoring"],
                    "namespaceSelectorExpressions": [{"key": "ci", "operator": "In", "values": ["true"]}]},
    },
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


def with_component(dev_manifests: pathlib.Path, overlay_name: str, resource: str, component: str) -> list:
    """`kustomize build` of a new overlay: `resource` with one of components/."""
    overlay = dev_manifests / "overlays" / overlay_name
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [resource], "components": [f"../../components/{component}"]}))
    return kustomize(overlay)


KUSTOMIZATIONS = ["base", "overlays/cert-manager", "overlays/dev"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, dev_manifests) -> dict:
    """Every rendering, by name: chart value sets and kustomizations."""
    out = {}
    for name, values in {**VALUE_SETS, **POLICY_SETS}.items():
        out[f"helm:{name}"] = render_chart(values, tmp_path_factory.mktemp(name))
    for k in KUSTOMIZATIONS:
        out[f"kustomize:{k}"] = kustomize(dev_manifests / k)
    return out


ALL = [f"helm:{n}" for n in VALUE_SETS] + [f"kustomize:{k}" for k in KUSTOMIZATIONS]


def namespace_of(name: str) -> str:
    return "dind-injector" if name.startswith("kustomize:") else RELEASE_NS


def values_of(name: str) -> dict:
    sets = {**VALUE_SETS, **POLICY_SETS}
    return sets.get(name.removeprefix("helm:"), {}) if name.startswith("helm:") else {}


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


@pytest.mark.parametrize("name", [n for n in {**VALUE_SETS, **POLICY_SETS} if n != "defaults"])
def test_helm_lint_with_values(name, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({**VALUE_SETS, **POLICY_SETS}[name]))
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
    "issuerRef without a name": {"certificates": {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer"}}}},
    "delivery": {"delivery": "both"},
    "regenerate (now regenerateToken)": {"certificates": {"regenerate": True}},
    "webhook port 0": {"server": {"port": 0}},
    "policy rendering not text": {"policy": {"rendered": ["x"]}},
    "profile name": {"config": {"profiles": {"Big": {}}}},
    "profile field": {"config": {"profiles": {"big": {"imagee": "x"}}}},
    "profile quantity": {"config": {"profiles": {"big": {"storageSizeLimit": "20GB"}}}},
    "storage type": {"config": {"dind": {"storage": {"type": "pvc"}}}},
    "storage medium": {"config": {"dind": {"storage": {"medium": "Disk"}}}},
    "registry CA source": {"config": {"dind": {"registryCertificates": [
        {"registry": "r.example", "configMap": "a", "secret": "b"}]}}},
    "registry with scheme": {"config": {"dind": {"registryCertificates": [
        {"registry": "https://r.example", "configMap": "a"}]}}},
    "extra mount volume": {"config": {"dind": {"extraMounts": [
        {"mountPath": "/x", "volume": {"emptyDir": {}, "hostPath": {"path": "/y"}}}]}}},
    "namespaceProfiles": {"config": {"namespaceProfiles": "yes"}},
    "registry CA not PEM": {"dockerSettings": {"registryCAs": {"ca": "not a certificate"}}},
    "docker settings namespace": {"dockerSettings": {"namespaces": ["CI"]}},
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
    port = get(values, "server.port", 8443)
    assert {"name": "https", "containerPort": port, "protocol": "TCP"} in container["ports"]
    if name.startswith("helm:"):
        assert f"--addr=0.0.0.0:{port}" in container["args"]
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
    # Pod disruption budget over the same pods, only where it lets a drain
    # evict one: with one replica, minAvailable 1 would block every drain.
    min_available = get(values, "podDisruptionBudget.minAvailable", 1)
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    if min_available < spec["replicas"]:
        assert len(pdbs) == 1
        assert pdbs[0]["spec"]["selector"]["matchLabels"] == selector
        assert pdbs[0]["spec"]["minAvailable"] == min_available
    else:
        assert not pdbs, "a PodDisruptionBudget that allows no eviction blocks node drains"
    # The service account the auto mode reads the cluster with.
    sa = one(objs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("name", ALL)
def test_rbac_is_exactly_what_auto_detection_needs(name, rendered):
    objs, ns = rendered[name], namespace_of(name)
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    # config.namespaceProfiles adds its own pair (test_namespace_profiles_rbac).
    objs = [o for o in objs if not o["metadata"]["name"].endswith("-namespaces")]
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


def test_reading_pull_secrets_is_opt_in(tmp_path):
    """config.registry.readPullSecrets (issue 16) grants get on Secrets and
    ServiceAccounts, and only then; the binary accepts the rendered config."""
    objs = render_chart({"config": {"registry": {"readPullSecrets": True}}}, tmp_path)
    rules = one(objs, "ClusterRole")["rules"]
    assert rules[-1] == {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}
    assert rendered_config(objs)["registry"]["readPullSecrets"] is True
    default = one(render_chart({}, tmp_path), "ClusterRole")["rules"]
    assert "secrets" not in json.dumps(default)


def test_pull_secrets_component(dev_manifests, tmp_path):
    """components/pull-secrets grants what the chart grants with
    config.registry.readPullSecrets (the e2e suite gives the webhook's
    identity exactly this, `make e2e E2E_ARGS=pull_secrets`), bound to the
    base's ServiceAccount; the base alone grants neither."""
    objs = with_component(dev_manifests, "pull-secrets", "../../base", "pull-secrets")
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "dind-injector-pull-secrets")
    chart = one(render_chart({"config": {"registry": {"readPullSecrets": True}}}, tmp_path), "ClusterRole")["rules"]
    assert role["rules"] == [chart[-1]]
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == "dind-injector-pull-secrets")
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    base = kustomize(dev_manifests / "base")
    assert "secrets" not in json.dumps([o for o in base if o["kind"] == "ClusterRole"])


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
    service_labels = one(objs, "Service")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service_labels.items(), "the ServiceMonitor selects no Service"
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
    objs = with_component(dev_manifests, "old-cluster", "../cert-manager", "no-match-conditions")
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
    ({"replicaCount": 1}, KUBE_VERSION, ["No PodDisruptionBudget"], []),
    ({"delivery": "policy"}, KUBE_VERSION, ["delivery is policy", "ci-system-ci-dind-injector", "helm test ci"],
     ["rollout status", "failurePolicy is", "generated by the chart", "Metrics:", "No PodDisruptionBudget"]),
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
    objs = with_component(dev_manifests, "policy", "../../base", "policy-delivery")
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


# --- references between rendered objects -------------------------------------------

POLICY = [f"helm:{n}" for n in POLICY_SETS]


def subset(selector: dict, labels: dict) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def reference_errors(objs: list, ns: str, external_secrets: bool = False) -> list:
    """Every selector, name and port one rendered object uses to find another:
    the object it means is rendered too (or, for an external issuer and a
    kustomize base without its overlay, deliberately not)."""
    errors = []
    named = {}
    for o in objs:
        named.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

    def exists(kind, name, where):
        if name not in named.get(kind, {}):
            errors.append(f"{where}: no {kind} {name!r}")
            return None
        return named[kind][name]

    templates = [(d["metadata"]["name"], d["spec"]["template"]) for d in named.get("Deployment", {}).values()]
    pods = templates + [(p["metadata"]["name"], p) for p in named.get("Pod", {}).values()]
    for name, d in named.get("Deployment", {}).items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        if not subset(d["spec"]["selector"]["matchLabels"], labels):
            errors.append(f"Deployment {name}: selector does not select its own pods")
        spec = d["spec"]["template"]["spec"]
        terms = [t["labelSelector"]["matchLabels"] for t in spec.get("topologySpreadConstraints", [])]
        terms += [t["podAffinityTerm"]["labelSelector"]["matchLabels"] for t in
                  get(spec, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution", [])]
        for t in terms:
            if not subset(t, labels):
                errors.append(f"Deployment {name}: spread/affinity selector {t} matches none of its pods")
    for name, svc in named.get("Service", {}).items():
        selected = [t for _, t in templates if subset(svc["spec"]["selector"], t["metadata"]["labels"])]
        if not selected:
            errors.append(f"Service {name}: selector {svc['spec']['selector']} selects no pods")
            continue
        container_ports = {p.get("name"): p["containerPort"] for t in selected for c in t["spec"]["containers"]
                           for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            target = p["targetPort"]
            if target not in (container_ports if isinstance(target, str) else container_ports.values()):
                errors.append(f"Service {name}: targetPort {target!r} is no container port ({container_ports})")
    for name, pdb in named.get("PodDisruptionBudget", {}).items():
        if not any(subset(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]) for _, t in templates):
            errors.append(f"PodDisruptionBudget {name}: selects no pods")
    for name, sm in named.get("ServiceMonitor", {}).items():
        services = [s for s in named.get("Service", {}).values()
                    if s["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
                    and subset(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if not services:
            errors.append(f"ServiceMonitor {name}: selects no Service")
        for e in sm["spec"]["endpoints"]:
            if not any(e["port"] in [p["name"] for p in s["spec"]["ports"]] for s in services):
                errors.append(f"ServiceMonitor {name}: no selected Service has a port named {e['port']!r}")
    certificate_secrets = {c["spec"]["secretName"]: c for c in named.get("Certificate", {}).values()}
    for name, pod in pods:
        spec = pod["spec"]
        sa = spec.get("serviceAccountName")
        if sa and sa != "default":
            exists("ServiceAccount", sa, f"pod of {name}")
        for v in spec.get("volumes", []):
            if "configMap" in v:
                exists("ConfigMap", v["configMap"]["name"], f"pod of {name}, volume {v['name']}")
            if "secret" in v and v["secret"]["secretName"] not in certificate_secrets and not external_secrets:
                exists("Secret", v["secret"]["secretName"], f"pod of {name}, volume {v['name']}")
        mounts = [m["name"] for c in spec.get("initContainers", []) + spec["containers"] for m in c.get("volumeMounts", [])]
        for m in mounts:
            if m not in [v["name"] for v in spec.get("volumes", [])]:
                errors.append(f"pod of {name}: mount of a volume {m!r} it does not have")
    for name, mwc in named.get("MutatingWebhookConfiguration", {}).items():
        for wh in mwc["webhooks"]:
            ref = wh["clientConfig"]["service"]
            if ref["namespace"] != ns:
                errors.append(f"MutatingWebhookConfiguration {name}: Service namespace {ref['namespace']}")
            svc = exists("Service", ref["name"], f"MutatingWebhookConfiguration {name}")
            if svc and ref["port"] not in [p["port"] for p in svc["spec"]["ports"]]:
                errors.append(f"MutatingWebhookConfiguration {name}: Service {ref['name']} has no port {ref['port']}")
        inject = get(mwc, "metadata.annotations", {}).get("cert-manager.io/inject-ca-from")
        if inject:
            cert_ns, cert_name = inject.split("/")
            cert = exists("Certificate", cert_name, f"MutatingWebhookConfiguration {name} (inject-ca-from)")
            if cert and cert["metadata"]["namespace"] != cert_ns:
                errors.append(f"inject-ca-from {inject}: the Certificate is in {cert['metadata']['namespace']}")
    for name, crb in named.get("ClusterRoleBinding", {}).items():
        exists("ClusterRole", crb["roleRef"]["name"], f"ClusterRoleBinding {name}")
        for subj in crb["subjects"]:
            exists("ServiceAccount", subj["name"], f"ClusterRoleBinding {name}")
            if subj["namespace"] != ns:
                errors.append(f"ClusterRoleBinding {name}: subject in {subj['namespace']}")
    for name, cert in named.get("Certificate", {}).items():
        ref = cert["spec"]["issuerRef"]
        if ref["kind"] == "Issuer" and (ref["name"] in named.get("Issuer", {}) or not external_secrets):
            exists("Issuer", ref["name"], f"Certificate {name}")
    for name, issuer in named.get("Issuer", {}).items():
        if "ca" in issuer["spec"] and issuer["spec"]["ca"]["secretName"] not in certificate_secrets:
            errors.append(f"Issuer {name}: no Certificate writes its CA Secret {issuer['spec']['ca']['secretName']}")
    for kind in ("MutatingAdmissionPolicy", "ValidatingAdmissionPolicy"):
        for name, binding in named.get(kind + "Binding", {}).items():
            exists(kind, binding["spec"]["policyName"], f"{kind}Binding {name}")
        if len(named.get(kind, {})) != len(named.get(kind + "Binding", {})):
            errors.append(f"{kind}: {len(named.get(kind, {}))} policies, {len(named.get(kind + 'Binding', {}))} bindings")
    return errors


@pytest.mark.parametrize("name", ALL + POLICY)
def test_references_between_objects(name, rendered):
    values = values_of(name)
    external = name == "kustomize:base" or bool(get(values, "certificates.certManager.issuerRef"))
    errors = reference_errors(rendered[name], namespace_of(name), external_secrets=external)
    assert not errors, "\n".join(errors)


def test_reference_check_finds_broken_references(rendered):
    """The check above fails on the defects it exists for (among them the
    ServiceMonitor that selected no Service)."""
    objs = copy.deepcopy(rendered["helm:monitoring"])
    service = one(objs, "Service")
    del service["metadata"]["labels"]["app.kubernetes.io/component"]
    service["spec"]["ports"][0]["targetPort"] = "http"
    one(objs, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]["name"] = "other"
    one(objs, "ClusterRoleBinding")["roleRef"]["name"] = "other"
    text = "\n".join(reference_errors(objs, RELEASE_NS))
    for expected in ("ServiceMonitor", "targetPort 'http'", "no Service 'other'", "no ClusterRole 'other'"):
        assert expected in text, text
    policies = copy.deepcopy(rendered["helm:policy"])
    one(policies, "MutatingAdmissionPolicyBinding")["spec"]["policyName"] = "dind-injector"
    assert "no MutatingAdmissionPolicy 'dind-injector'" in "\n".join(reference_errors(policies, RELEASE_NS))


def test_cluster_scoped_names_do_not_collide_across_namespaces(tmp_path):
    """Two releases of the same name in two namespaces: every cluster-scoped
    object of one is named apart from the other's."""
    def cluster_scoped(ns, values):
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", ns,
                    "--kube-version", KUBE_VERSION, "--values", str(values_file)])
        assert proc.returncode == 0, proc.stderr
        return {(o["kind"], o["metadata"]["name"]) for o in load_all(proc.stdout) if "namespace" not in o["metadata"]}
    for values in ({}, {"delivery": "policy"}):
        a, b = cluster_scoped("team-a", values), cluster_scoped("team-b", values)
        assert len(a) >= 3 and len(a) == len(b)
        assert not a & b, a & b


# --- certificates kept across upgrades --------------------------------------------------


@pytest.mark.parametrize("existing_token,token,kept", [
    (None, "", False),          # first install
    ("", "", True),             # plain upgrade
    ("", "2026-11-30", False),  # a new token: a new pair, once
    ("2026-11-30", "2026-11-30", True),  # the same token again (--reuse-values)
    ("2026-11-30", "", True),   # token removed
    ("2026-11-30", "2027-01-01", False),
    ("incomplete", "", False),  # a Secret without its CA
])
def test_generated_certificate_is_kept_unless_a_new_token(existing_token, token, kept, tmp_path):
    """The decision `lookup` feeds (helm template cannot look up), through a
    copy of the chart with a template that hands it a Secret as the cluster
    would. Before regenerateToken, `regenerate=true` stayed in the values
    under --reuse-values and issued a new CA on every later upgrade."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    existing = {}
    if existing_token is not None:
        data = {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}
        if existing_token == "incomplete":
            del data["ca.crt"]
        existing = {"metadata": {"name": "x", "annotations": {"dind-injector.io/regenerate-token": existing_token}},
                    "data": data}
    (chart / "templates" / "zz-kept.yaml").write_text(
        'kept: {{ include "dind-injector.keptCertificate" (dict "existing" (%s | fromJson) "token" %s) | quote }}\n'
        % (json.dumps(json.dumps(existing)), json.dumps(token)))
    proc = run([tool("HELM"), "template", RELEASE, str(chart), "--namespace", RELEASE_NS,
                "--show-only", "templates/zz-kept.yaml"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(yaml.safe_load(proc.stdout)["kept"])
    if kept:
        assert result == {"crt": "Y3J0", "key": "a2V5", "ca": "Y2E=", "token": existing_token}
    else:
        assert result == {}


def test_secret_remembers_the_token(tmp_path):
    objs = render_chart({"certificates": {"regenerateToken": "2026-11-30"}}, tmp_path)
    secret = one(objs, "Secret")
    assert secret["metadata"]["annotations"]["dind-injector.io/regenerate-token"] == "2026-11-30"


# --- delivery: policy -----------------------------------------------------------------------

POLICY_KINDS = ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
                "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def chart_config_file(values: dict, tmp_path: pathlib.Path) -> pathlib.Path:
    """The config.yaml the chart renders for these values (as the webhook's)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered_config(render_chart({**values, "delivery": "webhook"}, tmp_path))))
    return path


def policy_rendering(config: pathlib.Path, mode: str | None = None) -> str:
    proc = run([tool("DIND_INJECTOR"), "policy", "--config", str(config), *(["--mode", mode] if mode else [])])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("mode", ["native", "classic"])
def test_shipped_policies_are_the_rendering_of_the_chart_defaults(mode, tmp_path):
    """files/policy-<mode>.yaml is `dind-injector policy` on the config the
    chart renders by default: a change to the engine or to the chart's
    defaults must regenerate them (make chart-policies)."""
    expected = policy_rendering(chart_config_file({}, tmp_path), mode)
    shipped = (CHART / "files" / f"policy-{mode}.yaml").read_text()
    assert shipped == expected, f"files/policy-{mode}.yaml is stale: run make chart-policies"


@pytest.mark.parametrize("name", POLICY)
def test_policy_delivery_installs_the_policies_and_nothing_of_the_webhook(name, rendered, tmp_path):
    objs, values = rendered[name], values_of(name)
    installed = sorted(o["kind"] for o in objs if not get(o, "metadata.annotations", {}).get("helm.sh/hook"))
    assert installed == ["ConfigMap"] + POLICY_KINDS, installed
    mode = "classic" if get(values, "config.sidecarMode") == "classic" else "native"
    shipped = load_all((CHART / "files" / f"policy-{mode}.yaml").read_text())
    # The injection is taken as rendered; the chart names the objects, labels
    # them and sets the namespace selection from the same values as the webhook.
    policies = [o for o in objs if o["kind"] in POLICY_KINDS]
    for got, want in zip(sorted(policies, key=lambda o: o["kind"]), sorted(shipped, key=lambda o: o["kind"])):
        assert got["kind"] == want["kind"]
        assert got["metadata"]["name"] == f"{RELEASE_NS}-{RELEASE}-dind-injector"
        assert got["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        got_spec, want_spec = copy.deepcopy(got["spec"]), copy.deepcopy(want["spec"])
        if "matchConstraints" in got_spec:
            selector = got_spec["matchConstraints"].pop("namespaceSelector")
            want_spec["matchConstraints"].pop("namespaceSelector")
            exprs = {e["key"]: e for e in selector["matchExpressions"]}
            excluded = set(get(values, "webhook.excludedNamespaces", SYSTEM_NAMESPACES)) | {RELEASE_NS}
            assert set(exprs["kubernetes.io/metadata.name"]["values"]) == excluded
            assert exprs["dind-injector.io/injection"]["values"] == ["disabled"]
            for extra in get(values, "webhook.namespaceSelectorExpressions", []):
                assert extra in selector["matchExpressions"]
            assert got["metadata"]["annotations"] == want["metadata"]["annotations"]
        else:
            got_spec["policyName"] = want_spec["policyName"]
        assert got_spec == want_spec
    # The release's ConfigMap still holds the config (helm test, inject --from-cluster).
    config = rendered_config(objs)
    assert config["injector"]["image"].startswith("ghcr.io/dind-injector/dind-injector:")


@pytest.mark.parametrize("name", POLICY)
def test_policy_delivery_passes_the_strict_schema(name, rendered):
    for obj in rendered[name]:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def test_policy_delivery_with_the_releases_own_rendering(tmp_path):
    """Custom config: render its policies with the binary from the config the
    chart renders, pass them in, and the chart installs exactly those."""
    values = {"delivery": "policy",
              "image": {"repository": "registry.example.com/dind-injector", "tag": "v9"},
              "config": {"dind": {"resources": {"requests": {"cpu": "2", "memory": "4Gi"}}, "storageSizeLimit": "40Gi"}}}
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_rendering(chart_config_file(values, tmp_path)))
    objs = render_chart(values, tmp_path, extra=["--set-file", f"policy.rendered={policy_file}"])
    mutating = one(objs, "MutatingAdmissionPolicy")
    text = json.dumps(mutating)
    assert "registry.example.com/dind-injector:v9" in text and "40Gi" in text
    # Without it the chart refuses, naming what differs, instead of
    # installing policies of another config.
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--set", "delivery=policy", "--set", "config.dind.storageSizeLimit=40Gi"])
    assert proc.returncode != 0
    assert "config.dind.storageSizeLimit" in proc.stderr and "--set-file policy.rendered" in proc.stderr, proc.stderr
    # The message carries the release's config (JSON, so YAML too): rendering
    # it gives the policies the chart then accepts.
    config = re.search(r"this release's config is (\{.*?\})\s*$", proc.stderr.split("Use --debug")[0].strip(), re.S)
    assert config, proc.stderr
    (tmp_path / "from-message.json").write_text(config.group(1))
    policy_file.write_text(policy_rendering(tmp_path / "from-message.json"))
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--set", "delivery=policy", "--set", "config.dind.storageSizeLimit=40Gi",
                "--set-file", f"policy.rendered={policy_file}"])
    assert proc.returncode == 0, proc.stderr
    # A rendering in the other mode is refused too.
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--set", "delivery=policy",
                "--set-file", f"policy.rendered={CHART / 'files' / 'policy-classic.yaml'}"])
    assert proc.returncode != 0 and "config.sidecarMode" in proc.stderr, proc.stderr


@pytest.mark.parametrize("text,message", [
    ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n", 'unexpected object of kind "Deployment"'),
    ("# nothing\n", 'unexpected object of kind ""'),
    ("SHIPPED_FIRST_TWO", "holds [MutatingAdmissionPolicy MutatingAdmissionPolicyBinding]"),
    ("[unclosed", "not the YAML"),
])
def test_policy_delivery_refuses_what_is_not_a_rendering(text, message, tmp_path):
    if text == "SHIPPED_FIRST_TWO":
        text = yaml.safe_dump_all(load_all((CHART / "files" / "policy-native.yaml").read_text())[:2])
    rendering = tmp_path / "policy.yaml"
    rendering.write_text(text)
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--set", "delivery=policy", "--set-file", f"policy.rendered={rendering}"])
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_policy_delivery_without_its_stamp_is_refused(tmp_path):
    shipped = load_all((CHART / "files" / "policy-native.yaml").read_text())
    for o in shipped:
        o["metadata"].pop("annotations", None)
    rendering = tmp_path / "policy.yaml"
    rendering.write_text(yaml.safe_dump_all(shipped))
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--set", "delivery=policy", "--set-file", f"policy.rendered={rendering}"])
    assert proc.returncode != 0 and "no dind-injector.io/config annotation" in proc.stderr, proc.stderr


def test_policy_delivery_needs_1_36():
    proc = run([tool("HELM"), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                "--kube-version", "1.35.3", "--set", "delivery=policy"])
    assert proc.returncode != 0 and "needs Kubernetes >= 1.36" in proc.stderr, proc.stderr


# --- the chart's own documentation and metadata ------------------------------------------


def value_paths(values: dict, prefix: str = "") -> dict:
    """Every value a user sets, by dotted path: leaves, lists, and maps whose
    keys are free (labels, resources, an issuer reference); `config` is one
    entry, documented field by field in docs/configuration.md (whose block
    test_chart_defaults_match_binary_defaults checks against values.yaml)."""
    free = {"podAnnotations", "podLabels", "nodeSelector", "affinity", "labels", "annotations", "resources",
            "issuerRef"}
    out = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in free and path != "config":
            out.update(value_paths(value, path + "."))
        else:
            out[path] = value
    return out


def test_chart_readme_lists_every_value_with_its_default():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = value_paths(values)
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \|.*\|$", (CHART / "README.md").read_text(), re.M)
    documented = {path: default for path, default in rows}
    assert len(documented) == len(rows), "a value is listed twice"
    assert sorted(documented) == sorted(expected), (
        f"missing from the chart README: {sorted(set(expected) - set(documented))}; "
        f"not values: {sorted(set(documented) - set(expected))}")
    for path, default in documented.items():
        if path == "config":
            continue
        assert default.startswith("`") and default.endswith("`"), f"{path}: default {default!r}"
        assert yaml.safe_load(default.strip("`")) == expected[path], f"{path}: README says {default}"
    # The schema knows every value the README lists.
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in documented:
        node = schema
        for part in path.split("."):
            node = node["properties"][part]


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("home", "sources", "maintainers", "keywords", "kubeVersion", "description"):
        assert chart.get(key), f"Chart.yaml has no {key}"
    images = {i["name"]: i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    assert images == {"dind-injector": f"{values['image']['repository']}:{chart['appVersion']}",
                      "dind": values["config"]["dind"]["image"]}
    proc = run([tool("HELM"), "show", "readme", str(CHART)])
    assert proc.returncode == 0 and "| `delivery` |" in proc.stdout, proc.stderr
# --- Docker settings per workload ---------------------------------------------------


def docker_settings(objs: list) -> dict:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o["data"] for o in objs
            if o["kind"] == "ConfigMap" and get(o, "metadata.labels", {}).get("app.kubernetes.io/component") == "docker-settings"}


def test_docker_settings_configmaps_in_every_runner_namespace(rendered):
    values = VALUE_SETS["profiles"]["dockerSettings"]
    cms = docker_settings(rendered["helm:profiles"])
    assert set(cms) == {(ns, n) for ns in values["namespaces"] for n in ("docker-daemon", "registry-ca")}
    for ns in values["namespaces"]:
        assert json.loads(cms[(ns, "docker-daemon")]["daemon.json"]) == values["daemonConfigs"]["docker-daemon"]
        assert cms[(ns, "registry-ca")]["ca.crt"] == values["registryCAs"]["registry-ca"]
    assert docker_settings(rendered["helm:defaults"]) == {}


def test_profiles_reach_the_binary(rendered, tmp_path):
    """The rendered profiles are the binary's: a pod annotated with one gets
    its settings, the default profile applies to the others."""
    config = rendered_config(rendered["helm:profiles"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    job = yaml.safe_load((ROOT / "examples" / "runner-job.yaml").read_text())
    job["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})["dind-injector.io/profile"] = "big-builds"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    for source, storage in ((job_file, "ephemeral"), (ROOT / "examples" / "runner-job.yaml", "emptyDir")):
        proc = run([tool("DIND_INJECTOR"), "inject", "--config", str(config_file), "-f", str(source)])
        assert proc.returncode == 0, proc.stderr
        pod = load_all(proc.stdout)[0]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "dind-storage")
        assert storage in volume, volume


def test_namespace_profiles_rbac(rendered):
    objs = rendered["helm:profiles"]
    roles = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-namespaces")]
    assert len(roles) == 1
    assert roles[0]["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == roles[0]["metadata"]["name"])
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": one(objs, "ServiceAccount")["metadata"]["name"],
                                    "namespace": RELEASE_NS}]
    for name in ALL:
        if name != "helm:profiles":
            assert not [o for o in rendered[name] if o["metadata"]["name"].endswith("-namespaces")], name


def test_namespace_profiles_component(dev_manifests):
    objs = with_component(dev_manifests, "namespace-profiles", "../../base", "namespace-profiles")
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "dind-injector-namespaces")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
    binding = next(o for o in objs if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == "dind-injector-namespaces")
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
