// Temporary directories for one test file, removed once the file's tests are done, so that a
// bare `npx vitest` leaves nothing under the OS temp dir (make test also runs every test under a
// directory of its own: scripts/vitest-run.sh). The clean-up is registered when a test file
// imports this module, before the file's own hooks: after-hooks run in reverse, so it runs after
// them (a server the file stops in its afterAll may still write into a directory until then).
// For test files and the helpers only they import (bundles.ts): it registers a vitest hook.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new directory `<tmpdir>/<prefix>XXXXXX`, removed after this test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
