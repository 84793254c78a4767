#!/usr/bin/env python3
"""Pushes the test images of tests/registry.rs to a registry, over the
distribution API (no Docker, nothing pulled): one shared layer (a tar with
one file), and per image its config and manifest; a multi-platform index.

    push-images.py https://127.0.0.1:PORT CA.pem [USER:PASSWORD [TAG...]]

With credentials, only the private image (ENTRYPOINT only), tagged `1`
and each TAG (the e2e suite gives each of its cases a reference of its own,
since the webhook caches by reference).

Prints one line per pushed reference: `<name>:<tag> <manifest digest>`.
"""

import base64
import gzip
import hashlib
import io
import json
import ssl
import sys
import tarfile
import urllib.error
import urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

base, ca = sys.argv[1], sys.argv[2]
auth = None
if len(sys.argv) > 3:
    auth = "Basic " + base64.b64encode(sys.argv[3].encode()).decode()
private_tags = ["1"] + sys.argv[4:]
context = ssl.create_default_context(cafile=ca)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def call(method, url, data=None, content_type=None):
    req = urllib.request.Request(url if url.startswith("http") else base + url, data=data, method=method)
    if auth:
        req.add_header("Authorization", auth)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"push-images.py: {method} {url}: HTTP {e.code}: {e.read()[:300]!r}")


def blob(repo, data):
    d = digest(data)
    _, headers, _ = call("POST", f"/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    sep = "&" if "?" in location else "?"
    call("PUT", f"{location}{sep}digest={d}", data, "application/octet-stream")
    return d


def manifest(repo, tag, body, media_type):
    call("PUT", f"/v2/{repo}/manifests/{tag}", body, media_type)
    print(f"{repo}:{tag} {digest(body)}")
    return digest(body)


def layer():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        content = b"from the test registry\n"
        info.size, info.mtime = len(content), 946684800
        tar.addfile(info, io.BytesIO(content))
    diff_id = digest(raw.getvalue())
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


LAYER, DIFF_ID = layer()


def image(repo, tag, entrypoint, cmd, arch="amd64", oci=True, push_tag=True):
    """Pushes config and manifest; returns (manifest bytes, digest)."""
    config = canonical({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]},
    })
    config_digest = blob(repo, config)
    layer_digest = blob(repo, LAYER)
    body = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "digest": layer_digest, "size": len(LAYER)}],
    })
    media = OCI_MANIFEST if oci else DOCKER_MANIFEST
    if push_tag:
        manifest(repo, tag, body, media)
    else:
        call("PUT", f"/v2/{repo}/manifests/{digest(body)}", body, media)
    return body, digest(body)


if auth:
    body, _ = image("private/runner", private_tags[0], ["/private.sh"], None)
    for tag in private_tags[1:]:
        manifest("private/runner", tag, body, OCI_MANIFEST)
    sys.exit(0)

image("runner/entrypoint", "1", ["/entry.sh"], None)
image("runner/entrypoint-cmd", "1", ["/entry.sh", "-v"], ["--once", "--labels=x y"])
image("runner/cmd-only", "1", None, ["/bin/run.sh", "now"], oci=False)
image("runner/none", "1", None, None)
# A multi-platform index: each architecture's runner says which it is.
entries = []
for arch in ["arm64", "amd64"]:
    body, d = image("runner/multi", arch, [f"/{arch}.sh"], None, arch=arch, push_tag=False)
    entries.append({"mediaType": OCI_MANIFEST, "digest": d, "size": len(body),
                    "platform": {"os": "linux", "architecture": arch}})
manifest("runner/multi", "1", canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}), OCI_INDEX)
