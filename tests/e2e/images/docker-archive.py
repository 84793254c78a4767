#!/usr/bin/env python3
"""Writes a one-layer docker-archive (the `docker save` format, which both
`docker load` and `ctr images import` accept) from a root filesystem tree.

    docker-archive.py ROOTFS OUT.tar --tag REF [--entrypoint JSON] [--cmd JSON]
                      [--env K=V]... [--workdir DIR]

Reproducible: entries sorted, mtime fixed, owner 0:0 with no names, no
hard links, the JSON canonical, so the same tree and flags give the same
bytes, and the build key can stand for them.
"""

import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import tempfile

MTIME = 946684800  # 2000-01-01: any fixed value; some tools dislike 0
CREATED = "2000-01-01T00:00:00Z"


def entry(name, mode, kind):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.type = kind
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_layer(rootfs, out):
    """The layer tar of ROOTFS into the open file OUT; returns its sha256."""
    paths = []
    for top, dirs, files in os.walk(rootfs):
        for n in dirs + files:
            paths.append(os.path.relpath(os.path.join(top, n), rootfs))
    # A parent sorts before its children (a prefix sorts first).
    paths.sort()
    digest = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            digest.update(b)
            return out.write(b)

    with tarfile.open(fileobj=Hashing(), mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for rel in paths:
            full = os.path.join(rootfs, rel)
            st = os.lstat(full)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                ti = entry(rel, 0o777, tarfile.SYMTYPE)
                ti.linkname = os.readlink(full)
                tar.addfile(ti)
            elif stat.S_ISDIR(st.st_mode):
                tar.addfile(entry(rel, perm, tarfile.DIRTYPE))
            elif stat.S_ISREG(st.st_mode):
                ti = entry(rel, perm, tarfile.REGTYPE)
                ti.size = st.st_size
                with open(full, "rb") as f:
                    tar.addfile(ti, f)
            else:
                sys.exit(f"docker-archive.py: {full}: only files, directories and symlinks")
    return digest.hexdigest()


def add_bytes(tar, name, data):
    ti = entry(name, 0o644, tarfile.REGTYPE)
    ti.size = len(data)
    tar.addfile(ti, io.BytesIO(data))


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rootfs")
    p.add_argument("out")
    p.add_argument("--tag", required=True)
    p.add_argument("--entrypoint", type=json.loads)
    p.add_argument("--cmd", type=json.loads)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    a = p.parse_args()

    tmpdir = os.path.dirname(os.path.abspath(a.out))
    with tempfile.TemporaryFile(dir=tmpdir) as layer:
        diff_id = write_layer(a.rootfs, layer)
        size = layer.tell()
        layer.seek(0)
        config = canonical({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": {
                "Entrypoint": a.entrypoint,
                "Cmd": a.cmd,
                "Env": a.env,
                "WorkingDir": a.workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": CREATED, "created_by": "tests/e2e/build-images.sh"}],
        })
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        layer_name = f"{diff_id}/layer.tar"
        manifest = canonical([{"Config": config_name, "RepoTags": [a.tag], "Layers": [layer_name]}])

        with open(a.out + ".tmp", "wb") as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            add_bytes(tar, config_name, config)
            tar.addfile(entry(diff_id, 0o755, tarfile.DIRTYPE))
            ti = entry(layer_name, 0o644, tarfile.REGTYPE)
            ti.size = size
            tar.addfile(ti, layer)
            add_bytes(tar, "manifest.json", manifest)
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
