#!/usr/bin/env bash
# vitest with every temp file of the run (test dirs, keys, e2e process logs) under one directory
# of its own: removed when every test passed, kept and named for a failure's logs. Exits with
# vitest's status. Arguments go to `vitest run`.
set -u
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/lbac-test.XXXXXX")
TMPDIR="$run_tmp" vitest run "$@"
status=$?
if [ "$status" -eq 0 ]; then rm -rf "$run_tmp"
else echo "[test] temp files and e2e process logs of this run: $run_tmp"; fi
exit "$status"
