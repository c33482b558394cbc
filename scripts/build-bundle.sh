#!/usr/bin/env bash
# Builds a signed OPA bundle of the default policy (policies/, tests excluded)
# with the real OPA CLI, for serving to gateways from a bundle service:
#
#   scripts/build-bundle.sh        → .run/bundle/bundle.tar.gz (+ .sha256)
#
#   opa build -t wasm -e lbac/decision -r <revision> \
#             --signing-key <key> --signing-alg <alg> --bundle <policies copy>
#
# Environment:
#   BUNDLE_OUT_DIR       output directory (default .run/bundle)
#   BUNDLE_REVISION      manifest revision (default: git describe --always --dirty, else the sources' sha256)
#   BUNDLE_SIGNING_KEY   PEM private key (RSA or EC). Default: .run/bundle/signing-key.pem, generated with
#                        openssl on first use (a development key: use your own in a pipeline)
#   BUNDLE_SIGNING_ALG   RS256 (default) or ES256 (…384/512, PS…): must match the key and the gateway's config
#   BUNDLE_CLAIMS_FILE   optional --claims-file (e.g. {"scope": "prod", "keyid": "ci-2026"})
#   BUNDLE_SKIP_TESTS=1  skip opa fmt/check/test before building
# The matching public key is written next to the bundle as signing-key.pub.pem.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${BUNDLE_OUT_DIR:-.run/bundle}"
ALG="${BUNDLE_SIGNING_ALG:-RS256}"
ENTRYPOINT="lbac/decision"
log() { printf '[bundle] %s\n' "$*"; }
die() { printf '[bundle] ERROR: %s\n' "$*" >&2; exit 1; }

command -v opa >/dev/null 2>&1 || die "opa not found on PATH (run via make, or scripts/tools.sh opa)"
mkdir -p "$OUT_DIR"

if [ "${BUNDLE_SKIP_TESTS:-0}" != 1 ]; then
  bash scripts/build-policy.sh test-only
fi

KEY="${BUNDLE_SIGNING_KEY:-$OUT_DIR/signing-key.pem}"
if [ ! -f "$KEY" ]; then
  [ -z "${BUNDLE_SIGNING_KEY:-}" ] || die "BUNDLE_SIGNING_KEY=$KEY does not exist"
  command -v openssl >/dev/null 2>&1 || die "openssl is needed to generate a development signing key"
  log "generating a development signing key $KEY ($ALG)"
  case "$ALG" in
    RS*|PS*) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY" 2>/dev/null ;;
    ES256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY" 2>/dev/null ;;
    ES384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$KEY" 2>/dev/null ;;
    ES512) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$KEY" 2>/dev/null ;;
    *) die "unsupported BUNDLE_SIGNING_ALG $ALG" ;;
  esac
  chmod 600 "$KEY"
fi
PUB="$OUT_DIR/signing-key.pub.pem"
openssl pkey -in "$KEY" -pubout -out "$PUB" 2>/dev/null || die "cannot derive the public key from $KEY"

REVISION="${BUNDLE_REVISION:-}"
if [ -z "$REVISION" ]; then
  REVISION="$(git describe --always --dirty 2>/dev/null || true)"
  [ -n "$REVISION" ] || REVISION="sha256-$(find policies -name '*.rego' ! -name '*_test.rego' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
fi

# Build from a copy without the tests, from inside it, so sources are stored as /lbac/*.rego.
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
(cd policies && find . -name '*.rego' ! -name '*_test.rego' -type f -exec cp --parents {} "$SRC/" \;)
[ ! -f policies/data.json ] || cp policies/data.json "$SRC/"
[ ! -f policies/.manifest ] || cp policies/.manifest "$SRC/"

OUT="$(cd "$OUT_DIR" && pwd)/bundle.tar.gz"
args=(build -t wasm -e "$ENTRYPOINT" -r "$REVISION" --signing-key "$(realpath "$KEY")" --signing-alg "$ALG" -o "$OUT.tmp")
[ -z "${BUNDLE_CLAIMS_FILE:-}" ] || args+=(--claims-file "$(realpath "$BUNDLE_CLAIMS_FILE")")
log "opa ${args[*]} --bundle ."
(cd "$SRC" && opa "${args[@]}" --bundle .)
mv "$OUT.tmp" "$OUT"
chmod 644 "$OUT"
sha256sum "$OUT" | cut -d' ' -f1 >"$OUT.sha256"
log "wrote $OUT_DIR/bundle.tar.gz (revision $REVISION, $(wc -c <"$OUT") bytes, signed $ALG; public key $PUB)"
KEYID=default
if [ -n "${BUNDLE_CLAIMS_FILE:-}" ]; then
  # The claims file may name the key (opa build signs with that keyid); the config must use the same.
  KEYID="$(node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(typeof c.keyid === "string" ? c.keyid : "default")' "$BUNDLE_CLAIMS_FILE")"
fi
log "serve it as <url>/<resource> and configure policy.bundle.signing.keys: [{keyid: $KEYID, algorithm: $ALG, publicKeyFile: $PUB}]"
