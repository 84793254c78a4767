#!/usr/bin/env python3
"""review-with-pod.py REVIEW POD OUT: the AdmissionReview REVIEW with POD as
its object (POD "-": its own object), written compactly to OUT, as the
apiserver sends it: the benchmarks' bodies (benches/load.sh,
scripts/hot-functions.sh)."""
import json
import sys

review_path, pod_path, out_path = sys.argv[1:4]
with open(review_path) as f:
    review = json.load(f)
if pod_path != "-":
    with open(pod_path) as f:
        review["request"]["object"] = json.load(f)
with open(out_path, "w") as f:
    json.dump(review, f, separators=(",", ":"))
