#!/usr/bin/env node
// Entry point. In a checkout on a Node.js that strips TypeScript types natively
// (22.18+/24), run the sources directly so there is no stale build; otherwise
// (older Node, or installed under node_modules where Node refuses to strip
// types) run the compiled dist/ that `npm ci` builds through the `prepare` script.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// SIGHUP's default action ends the process: until `serve` installs its own handler (its first
// statement), one is ignored (the config is not read yet, so nothing is missed). Installed
// before anything else is loaded, so the window in which a reload signal kills a starting
// process is Node's own start-up only.
const ignoreEarlyHup = () => {};
process.on('SIGHUP', ignoreEarlyHup);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src', 'cli', 'main.ts');
const dist = join(root, 'dist', 'cli', 'main.js');
const canStrip = Boolean(process.features && process.features.typescript) && !root.split(/[\\/]/).includes('node_modules');
const entry = canStrip && existsSync(src) ? src : dist;
if (!existsSync(entry)) {
  console.error(`lbac-gateway: ${entry} is missing; run "npm run build" (or use Node.js >= 22.18)`);
  process.exit(1);
}
// V8 settings first, before any of the gateway's code runs (src/cli/runtime-flags.ts).
const { applyRuntimeFlags } = await import(pathToFileURL(join(dirname(entry), entry.endsWith('.ts') ? 'runtime-flags.ts' : 'runtime-flags.js')).href);
applyRuntimeFlags(process.env);
const { main } = await import(pathToFileURL(entry).href);
const done = main(process.argv.slice(2));
process.off('SIGHUP', ignoreEarlyHup);
process.exitCode = await done;
