#!/usr/bin/env python3
"""Validates every injected pod in tests/golden/ against the strict
Kubernetes JSON schema (kubernetes-validate, offline) of a current release.

Strict mode rejects unknown fields, so a misspelt field in what the engine
adds fails here even though JSON Patch would happily apply it.
Usage: validate_golden.py KUBERNETES_VERSION GOLDEN_DIR
"""
import json
import pathlib
import sys

import kubernetes_validate


def main() -> int:
    version, golden_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    validated, failed = 0, 0
    for path in sorted(golden_dir.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("decision") != "inject":
            continue
        try:
            kubernetes_validate.validate(record["pod"], version, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as e:
            failed += 1
            print(f"{path.name}: {e.message} at {'/'.join(map(str, e.path))}", file=sys.stderr)
    print(f"injected pods valid against the strict Kubernetes {version} schema:")
    print(f"schema: {validated} passed, {failed} failed")
    if validated == 0:
        print("schema: no injected pod found to validate", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
