"""The packaged chart and image, as users get them: `make chart` and `make
image`, pushed to a real OCI registry (Debian's docker-registry, started here
on 127.0.0.1) and installed from it the way charts are installed today
(`helm ... oci://`).

Run by `make deploy-test` with HELM, DIND_INJECTOR_STATIC (the static
binary `make static` builds) and the packages of `make image-deps` (buildah,
docker-registry). A missing tool is a failure, never a skip.
"""

import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests" / "helm" / "dind-injector"
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def tool(name: str) -> str:
    path = os.environ.get(name) or shutil.which(name.lower().replace("_", "-"))
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not set to an executable ({path!r}): run through `make deploy-test`")
    return path


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kw)


def make(*targets, **env) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", "-C", str(ROOT), *targets],
               env={**os.environ, **{k: str(v) for k, v in env.items()}})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A docker-registry on a free loopback port, storing in a temp dir."""
    tmp = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log = open(tmp / "registry.log", "w")
    proc = subprocess.Popen([tool("DOCKER_REGISTRY"), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp / "registry.log").read_text()
            assert time.monotonic() < deadline, "docker-registry did not answer in 20 s"
            time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def packaged_chart(tmp_path_factory) -> pathlib.Path:
    dist = tmp_path_factory.mktemp("dist")
    proc = make("chart", DIST=dist)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dist / f"dind-injector-{CHART_VERSION}.tgz"


def test_make_chart_packages_the_whole_chart(packaged_chart):
    with tarfile.open(packaged_chart) as tar:
        names = set(tar.getnames())
    for path in CHART.rglob("*"):
        if path.is_file():
            assert f"dind-injector/{path.relative_to(CHART)}" in names, f"{path} is not in the package"


def render(chart_ref: str, *args) -> list:
    proc = run([tool("HELM"), "template", "ci", chart_ref, "--namespace", "ci-system", "--kube-version", "1.37.0",
                # cert-manager: no generated certificate, so two renderings are comparable
                "--set", "certificates.certManager.enabled=true", *args])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_chart_from_the_oci_registry_renders_as_the_source(registry, packaged_chart):
    proc = run([tool("HELM"), "push", str(packaged_chart), f"oci://{registry}/charts", "--plain-http"])
    assert proc.returncode == 0, proc.stderr
    assert f"Pushed: {registry}/charts/dind-injector:{CHART_VERSION}" in proc.stderr + proc.stdout
    ref = f"oci://{registry}/charts/dind-injector"
    proc = run([tool("HELM"), "show", "chart", ref, "--version", CHART_VERSION, "--plain-http"])
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["appVersion"] == APP_VERSION
    for extra in ([], ["--set", "delivery=policy"]):
        pulled = render(ref, "--version", CHART_VERSION, "--plain-http", *extra)
        assert pulled == render(str(CHART), *extra)
        assert len(pulled) >= 7


@pytest.fixture(scope="module")
def image(tmp_path_factory, registry) -> tuple:
    static = tool("DIND_INJECTOR_STATIC")
    dist = tmp_path_factory.mktemp("image")
    ref = f"ghcr.io/dind-injector/dind-injector:{APP_VERSION}"
    push = f"docker://{registry}/dind-injector:{APP_VERSION}"
    proc = run([str(ROOT / "scripts" / "image.sh"), static, str(dist / "image.tar"), ref],
               env={**os.environ, "PUSH": push, "TLS_VERIFY": "false"})
    assert proc.returncode == 0, proc.stderr
    return dist / "image.tar", ref, static


def test_image_is_the_dockerfile_around_the_static_binary(image):
    archive, ref, static = image
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert len(manifest) == 1 and manifest[0]["RepoTags"] == [ref]
        config = json.load(tar.extractfile(manifest[0]["Config"]))["config"]
        assert len(manifest[0]["Layers"]) == 1, "FROM scratch + one COPY: one layer"
        layer = tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0]))
        files = {m.name.lstrip("./"): m for m in layer.getmembers() if m.isfile()}
        assert list(files) == ["usr/local/bin/dind-injector"], list(files)
        binary = layer.extractfile(files["usr/local/bin/dind-injector"]).read()
        assert files["usr/local/bin/dind-injector"].mode & 0o111
    assert hashlib.sha256(binary).digest() == hashlib.sha256(pathlib.Path(static).read_bytes()).digest()
    assert config["Entrypoint"] == ["/usr/local/bin/dind-injector"]
    assert config["Cmd"] == ["serve"]
    assert config["User"] == "65532:65532"
    assert set(config["ExposedPorts"]) == {"8443/tcp", "9090/tcp"}
    assert config["Labels"]["org.opencontainers.image.version"] == APP_VERSION.removeprefix("v")


def test_image_is_in_the_registry(image, registry):
    req = urllib.request.Request(f"http://{registry}/v2/dind-injector/manifests/{APP_VERSION}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        manifest = json.load(r)
    assert len(manifest["layers"]) == 1
    with urllib.request.urlopen(f"http://{registry}/v2/dind-injector/blobs/{manifest['config']['digest']}",
                                timeout=10) as r:
        config = json.load(r)
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/dind-injector"]


def test_image_refuses_a_dynamic_binary(tmp_path):
    proc = run([str(ROOT / "scripts" / "image.sh"), "/bin/true", str(tmp_path / "x.tar"), "x:1"])
    assert proc.returncode != 0 and "dynamically linked" in proc.stderr, proc.stderr
