#!/usr/bin/env bash
# Checks, tests and compiles the default Rego policy (policies/) to WebAssembly.
#
#   scripts/build-policy.sh             fmt + check + test + coverage, then build
#                                       wasm/policy.wasm and wasm/policy.manifest.json
#   scripts/build-policy.sh test-only   fmt + check + test + coverage only (make test)
#
# Uses the `opa` on PATH (the Makefile puts the pinned one, scripts/versions.env,
# first). Always prints a line `opa test: N passed, M failed` for the Makefile.
#
# Environment:
#   POLICY_COVERAGE_MIN         minimum line coverage of the non-test .rego files (default 90)
#   POLICY_ALLOW_OPA_MISMATCH=1 build even if `opa version` differs from OPA_VERSION in
#                               scripts/versions.env (the manifest records the version used)
#
# The build is reproducible: `opa build` writes no timestamps into policy.wasm,
# and the source paths it embeds (for error locations) are relative because we
# build from the repository root, so the same sources and OPA version give the
# same bytes wherever the checkout lives. The build runs twice and warns if the
# two results differ.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENTRYPOINT="lbac/decision"
POLICY_DIR="policies"
WASM_OUT="wasm/policy.wasm"
MANIFEST_OUT="wasm/policy.manifest.json"
COVERAGE_MIN="${POLICY_COVERAGE_MIN:-90}"

log() { printf '[policy] %s\n' "$*"; }
die() { printf '[policy] ERROR: %s\n' "$*" >&2; exit 1; }

MODE="${1:-build}"
case "$MODE" in
  build | test-only) ;;
  -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) die "unknown mode '$MODE' (expected: build, test-only)" ;;
esac

command -v opa >/dev/null 2>&1 || die "opa not found on PATH (run scripts/tools.sh opa, or use make)"
command -v node >/dev/null 2>&1 || die "node not found on PATH (used to read opa's JSON output)"
cd "$ROOT"

# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
OPA_ACTUAL="$(opa version | sed -n 's/^Version: *//p')"
log "using opa $OPA_ACTUAL ($(command -v opa)); pinned: ${OPA_VERSION#v}"
if [ "$OPA_ACTUAL" != "${OPA_VERSION#v}" ]; then
  if [ "$MODE" = build ] && [ "${POLICY_ALLOW_OPA_MISMATCH:-0}" != 1 ]; then
    die "opa $OPA_ACTUAL is not the pinned ${OPA_VERSION#v}; run via make (or set POLICY_ALLOW_OPA_MISMATCH=1)"
  fi
  log "WARNING: opa $OPA_ACTUAL is not the pinned ${OPA_VERSION#v}"
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- fmt ------------------------------------------------------------------------
# --list prints the files that would change and suppresses the formatted source;
# --fail makes that (or a parse error) a non-zero exit.
log "opa fmt --list --fail $POLICY_DIR"
if ! opa fmt --list --fail "$POLICY_DIR" >"$TMP/fmt.out" 2>"$TMP/fmt.err"; then
  if [ -s "$TMP/fmt.out" ]; then
    log "these files are not formatted (fix with: opa fmt -w $POLICY_DIR):"
    sed 's/^/  /' "$TMP/fmt.out"
  fi
  grep -v '^unexpected diff$' "$TMP/fmt.err" >&2 || true
  die "opa fmt failed"
fi

# --- check ----------------------------------------------------------------------
log "opa check --strict $POLICY_DIR"
opa check --strict "$POLICY_DIR" || die "opa check failed"

# --- test -----------------------------------------------------------------------
log "opa test $POLICY_DIR"
test_rc=0
opa test "$POLICY_DIR" --format json >"$TMP/test.json" 2>"$TMP/test.err" || test_rc=$?
# Each result has `fail: true` or `error` when it did not pass, `skip: true` for todo_ tests.
counts="$(node -e '
  let r;
  try { r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); } catch { r = null; }
  if (!Array.isArray(r)) { console.log("0 0 0 unparsable"); process.exit(0); }
  const skip = r.filter((t) => t.skip).length;
  const fail = r.filter((t) => !t.skip && (t.fail || t.error)).length;
  console.log(`${r.length - skip - fail} ${fail} ${skip} ok`);
' "$TMP/test.json")"
read -r passed failed skipped parsed <<<"$counts"
if [ "$parsed" != ok ] || [ "$failed" -gt 0 ] || [ "$test_rc" -ne 0 ]; then
  [ "$parsed" = ok ] || failed=$((failed > 0 ? failed : 1))
  [ "$failed" -gt 0 ] || failed=1
  cat "$TMP/test.err" >&2
  # Re-run for opa's human-readable report with the trace of each failure.
  opa test "$POLICY_DIR" >&2 || true
  echo "opa test: $passed passed, $failed failed"
  die "policy tests failed"
fi
skipped_note=""
[ "$skipped" -eq 0 ] || skipped_note=", $skipped skipped"
echo "opa test: $passed passed, $failed failed$skipped_note"

# --- coverage -------------------------------------------------------------------
# opa's own total includes the _test.rego files (always ~100%); we measure the
# policy files only.
log "opa test --coverage (minimum ${COVERAGE_MIN}% of policy lines)"
opa test "$POLICY_DIR" --coverage --format json >"$TMP/coverage.json" || die "opa test --coverage failed"
node -e '
  const [file, min] = process.argv.slice(1);
  const report = JSON.parse(require("fs").readFileSync(file, "utf8"));
  let covered = 0, total = 0;
  const missing = [];
  for (const [name, f] of Object.entries(report.files ?? {})) {
    if (name.endsWith("_test.rego")) continue;
    const notCovered = (f.not_covered ?? []).reduce((n, r) => n + r.end.row - r.start.row + 1, 0);
    covered += f.covered_lines ?? 0;
    total += (f.covered_lines ?? 0) + notCovered;
    for (const r of f.not_covered ?? []) missing.push(`  ${name}:${r.start.row}-${r.end.row}`);
  }
  const pct = total === 0 ? 0 : (100 * covered) / total;
  console.log(`[policy] coverage: ${pct.toFixed(1)}% (${covered}/${total} lines of policy files)`);
  if (pct < Number(min)) {
    console.log(`[policy] not covered:\n${missing.join("\n")}`);
    console.error(`[policy] ERROR: coverage ${pct.toFixed(1)}% is below ${min}%`);
    process.exit(1);
  }
' "$TMP/coverage.json" "$COVERAGE_MIN"

if [ "$MODE" = test-only ]; then
  log "test-only: done"
  exit 0
fi

# --- build ----------------------------------------------------------------------
# build_wasm DIR: compile and extract /policy.wasm from the bundle into DIR.
build_wasm() {
  local dir="$1"
  mkdir -p "$dir/bundle"
  opa build -t wasm -e "$ENTRYPOINT" --ignore '*_test.rego' -o "$dir/bundle.tar.gz" "$POLICY_DIR"
  # Bundle members are absolute (/policy.wasm); tar strips the leading '/' and says so on stderr.
  tar -xzf "$dir/bundle.tar.gz" -C "$dir/bundle" 2>"$dir/tar.err" || { cat "$dir/tar.err" >&2; die "could not extract the bundle"; }
  [ -s "$dir/bundle/policy.wasm" ] || die "bundle has no /policy.wasm"
}

log "opa build -t wasm -e $ENTRYPOINT --ignore '*_test.rego' $POLICY_DIR"
build_wasm "$TMP/a"
build_wasm "$TMP/b"
if cmp -s "$TMP/a/bundle/policy.wasm" "$TMP/b/bundle/policy.wasm"; then
  log "reproducible: two builds produced identical policy.wasm"
else
  log "WARNING: two builds produced different policy.wasm bytes (not reproducible)"
fi

sha256() { sha256sum "$1" | cut -d' ' -f1; }
wasm_sha="$(sha256 "$TMP/a/bundle/policy.wasm")"

# Source hash: sha256 over the `sha256sum` listing ("<sha256>  <path>\n" per file)
# of the non-test .rego files under policies/, sorted bytewise by their
# repository-relative path. test/policy/engine.test.ts recomputes it to detect a
# stale wasm/policy.wasm.
mapfile -t sources < <(find "$POLICY_DIR" -type f -name '*.rego' ! -name '*_test.rego' | LC_ALL=C sort)
[ "${#sources[@]}" -gt 0 ] || die "no .rego sources under $POLICY_DIR"
sha256sum "${sources[@]}" >"$TMP/sources.sha256"
sources_sha="$(sha256 "$TMP/sources.sha256")"

mkdir -p "$(dirname "$WASM_OUT")"
if [ -f "$WASM_OUT" ] && cmp -s "$TMP/a/bundle/policy.wasm" "$WASM_OUT"; then
  log "$WASM_OUT unchanged ($(wc -c <"$WASM_OUT") bytes, sha256 ${wasm_sha:0:12})"
else
  # The bundle stores files as 0600; install the artifact world-readable.
  install -m 0644 "$TMP/a/bundle/policy.wasm" "$WASM_OUT.tmp" && mv "$WASM_OUT.tmp" "$WASM_OUT"
  log "wrote $WASM_OUT ($(wc -c <"$WASM_OUT") bytes, sha256 ${wasm_sha:0:12})"
fi

node -e '
  const [out, entrypoint, opaVersion, wasmSha256, sourcesSha256, listing] = process.argv.slice(1);
  const sources = require("fs").readFileSync(listing, "utf8").trim().split("\n").map((l) => {
    const m = /^([0-9a-f]{64})  (.+)$/.exec(l);
    if (!m) throw new Error(`unexpected sha256sum line: ${l}`);
    return { path: m[2], sha256: m[1] };
  });
  const manifest = {
    entrypoint, opaVersion, wasmSha256, sourcesSha256, sources,
    sourcesHash: "sha256 of the lines \"<sha256>  <path>\\n\" (sha256sum format) for the non-test .rego files under policies/, sorted bytewise by repository-relative path",
  };
  require("fs").writeFileSync(out, JSON.stringify(manifest, null, 2) + "\n");
' "$MANIFEST_OUT" "$ENTRYPOINT" "$OPA_ACTUAL" "$wasm_sha" "$sources_sha" "$TMP/sources.sha256"
log "wrote $MANIFEST_OUT (sources sha256 ${sources_sha:0:12}, ${#sources[@]} file(s))"
log "done"
