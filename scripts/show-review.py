#!/usr/bin/env python3
"""Shows what the webhook did: reads its AdmissionReview answer on stdin,
applies the JSON Patch to the pod of the request file given as argument, and
prints the decision, the warnings and the injected pod.

    curl ... --data @examples/admission-review.json https://127.0.0.1:8443/mutate \
      | python3 scripts/show-review.py examples/admission-review.json
"""
import base64
import json
import sys


def unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def apply(doc, ops):
    for op in ops:
        *parents, last = [unescape(t) for t in op["path"].split("/")[1:]]
        target = doc
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        if isinstance(target, list):
            target.append(op["value"]) if last == "-" else target.insert(int(last), op["value"])
        else:
            target[last] = op["value"]  # add and replace alike on objects
    return doc


def main():
    request = json.load(open(sys.argv[1]))["request"]
    response = json.load(sys.stdin)["response"]
    for warning in response.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if not response["allowed"]:
        print(f"denied: {response['status']['message']}")
        return 1
    if "patch" not in response:
        print("allowed unchanged (no patch)")
        return 0
    ops = json.loads(base64.b64decode(response["patch"]))
    print(f"injected: {len(ops)} patch operations; the pod as it will be stored:", file=sys.stderr)
    print(json.dumps(apply(request["object"], ops), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
