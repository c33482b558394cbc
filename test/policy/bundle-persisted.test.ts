// What sits at the persisted bundle's path is checked before it is read: a device, a FIFO or a
// file larger than a download may be is refused at once (not read whole, not waited on).
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { BundleClient } from '../../src/policy/bundle-client.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

function client(persistDir: string, warnings: string[]): Promise<BundleClient> {
  return BundleClient.create({
    config: {
      url: 'http://127.0.0.1:9/',
      resource: '/bundle.tar.gz',
      auth: { type: 'none', scheme: 'Bearer' },
      polling: { minDelaySeconds: 60, maxDelaySeconds: 120 },
      timeoutMs: 1_000,
      maxSizeBytes: 1024 * 1024,
      persistDir,
    },
    holder: new PolicyHolder(),
    entrypoint: 'lbac/decision',
    configData: {},
    logger: { info: () => {}, debug: () => {}, error: () => {}, warn: (o: object, m: string) => void warnings.push(`${m} ${JSON.stringify(o)}`) },
  });
}

describe('the persisted bundle file', () => {
  const dirFor = (): string => {
    const dir = join(tempDir('lbac-persisted-'), 'state');
    mkdirSync(dir);
    return dir;
  };

  it('a FIFO, a device or an oversized file is refused before it is read', async () => {
    const cases: [string, (file: string) => void, RegExp][] = [
      ['fifo', (f) => execFileSync('mkfifo', [f]), /not a regular file/],
      ['device', (f) => symlinkSync('/dev/zero', f), /not a regular file/],
      ['oversized', (f) => writeFileSync(f, Buffer.alloc(1024 * 1024 + 1)), /larger than maxSizeBytes/],
    ];
    for (const [name, make, why] of cases) {
      const dir = dirFor();
      make(join(dir, 'bundle.tar.gz'));
      const warnings: string[] = [];
      const c = await client(dir, warnings);
      const started = performance.now();
      expect(await c.loadPersisted(), name).toBeUndefined();
      expect(performance.now() - started, name).toBeLessThan(1000);
      expect(warnings.join('\n'), name).toMatch(why);
    }
  });

  it('bundle.json is read the same way: a FIFO, a device or an oversized file there is refused at once, and the bundle is not activated', async () => {
    const cases: [string, (file: string) => void][] = [
      ['fifo', (f) => execFileSync('mkfifo', [f])],
      ['device', (f) => symlinkSync('/dev/zero', f)],
      ['oversized', (f) => writeFileSync(f, `{"url":"http://127.0.0.1:9/bundle.tar.gz","pad":"${'x'.repeat(128 * 1024)}"}`)],
    ];
    for (const [name, make] of cases) {
      const dir = dirFor();
      writeFileSync(join(dir, 'bundle.tar.gz'), Buffer.alloc(64));
      make(join(dir, 'bundle.json'));
      const warnings: string[] = [];
      const c = await client(dir, warnings);
      const started = performance.now();
      expect(await c.loadPersisted(), name).toBeUndefined();
      expect(performance.now() - started, name).toBeLessThan(1000);
    }
  });
});
