import { describe, expect, it } from 'vitest';
import { newId } from '../../src/util/ids.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newId', () => {
  it('is UUID-shaped (version 4, RFC 4122 variant) and never repeats within a process', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const id = newId();
      expect(id).toMatch(UUID_V4);
      seen.add(id);
    }
    expect(seen.size).toBe(100_000);
  });

  it('differs between processes: the first 74 bits are random per process', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = "import('" + new URL('../../src/util/ids.ts', import.meta.url).href + "').then((m) => process.stdout.write(m.newId()))";
    const ids = [0, 1, 2].map(() => execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids.map((id) => id.slice(0, 23))).size).toBe(3);
  });
});
