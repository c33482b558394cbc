import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generate } from '../../scripts/gen-config-docs.ts';

describe('docs/configuration.md', () => {
  it('its key reference is generated from the current schema (run: node scripts/gen-config-docs.ts)', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    expect(doc).toContain(generate());
  });
});
