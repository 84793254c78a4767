#!/usr/bin/env python3
"""review-with-pod.py REVIEW POD OUT: the AdmissionReview REVIEW with POD as
its object, written compactly to OUT: the benchmarks' 10 KB pod review
(benches/load.sh, scripts/hot-functions.sh)."""
import json
import sys

review_path, pod_path, out_path = sys.argv[1:4]
with open(review_path) as f:
    review = json.load(f)
with open(pod_path) as f:
    review["request"]["object"] = json.load(f)
with open(out_path, "w") as f:
    json.dump(review, f, separators=(",", ":"))
