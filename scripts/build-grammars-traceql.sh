#!/usr/bin/env bash
# Regenerates the TraceQL parser module from src/rewrite/grammars/traceql.grammar
# with the pinned @lezer/generator (devDependency):
#
#   src/rewrite/grammars/traceql.parser.ts        parser tables (LRParser.deserialize)
#   src/rewrite/grammars/traceql.parser.terms.ts  node type ids
#
# Both files are committed so that the gateway needs no build step. The unit
# test test/rewrite/traceql-grammar.test.ts regenerates the module in memory
# and fails when the committed files differ from what this script writes, so
# edit the grammar, run this script, and commit all three files together.
#
# Usage: scripts/build-grammars-traceql.sh [--check]
#   --check   regenerate into a temporary directory and compare; exit 1 on drift
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GRAMMAR="src/rewrite/grammars/traceql.grammar"
OUT="src/rewrite/grammars/traceql.parser.ts"
TERMS="src/rewrite/grammars/traceql.parser.terms.ts"
GEN="node_modules/.bin/lezer-generator"

if [[ ! -x "$GEN" ]]; then
  echo "[grammar] $GEN is missing; run npm ci first" >&2
  exit 1
fi

if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$GEN" --typeScript "$GRAMMAR" -o "$tmp/traceql.parser.ts" >/dev/null
  status=0
  cmp -s "$tmp/traceql.parser.ts" "$OUT" || { echo "[grammar] $OUT is stale" >&2; status=1; }
  cmp -s "$tmp/traceql.parser.terms.ts" "$TERMS" || { echo "[grammar] $TERMS is stale" >&2; status=1; }
  [[ $status -eq 0 ]] && echo "[grammar] traceql parser module is up to date"
  exit $status
fi

"$GEN" --typeScript "$GRAMMAR" -o "$OUT"
