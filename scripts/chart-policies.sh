#!/usr/bin/env bash
# Renders the Helm chart's shipped admission policies (delivery: policy):
# `dind-injector policy` on the config the chart renders with its default
# values, once per sidecar mode, into manifests/helm/dind-injector/files/.
# tests/deploy fails when they are stale; `make chart-policies` runs this.
#
# Usage: chart-policies.sh HELM DIND_INJECTOR
set -euo pipefail
helm=${1:?usage: chart-policies.sh HELM DIND_INJECTOR}
bin=${2:?usage: chart-policies.sh HELM DIND_INJECTOR}
chart=$(cd "$(dirname "$0")/../manifests/helm/dind-injector" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The ConfigMap's config.yaml block, indented by four spaces under `|`.
"$helm" template dind-injector "$chart" --show-only templates/configmap.yaml \
  | sed -n '/^  config.yaml: |$/,$p' | tail -n +2 | sed 's/^    //' > "$tmp/config.yaml"
for mode in native classic; do
  "$bin" policy --config "$tmp/config.yaml" --mode "$mode" > "$chart/files/policy-$mode.yaml"
  echo "==> $chart/files/policy-$mode.yaml"
done
