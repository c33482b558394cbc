/**
 * The committed TraceQL parser module must be exactly what
 * scripts/build-grammars-traceql.sh generates from the committed grammar.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildParserFile } from '@lezer/generator';
import { describe, expect, it } from 'vitest';

const dir = join(import.meta.dirname, '../../src/rewrite/grammars');

describe('TraceQL grammar', () => {
  it('the committed parser module matches src/rewrite/grammars/traceql.grammar (run scripts/build-grammars-traceql.sh)', () => {
    const grammar = readFileSync(join(dir, 'traceql.grammar'), 'utf8');
    const { parser, terms } = buildParserFile(grammar, { fileName: 'src/rewrite/grammars/traceql.grammar', moduleStyle: 'es', typeScript: true, warn: (m) => {
      throw new Error(`lezer-generator warning: ${m}`);
    } });
    expect(readFileSync(join(dir, 'traceql.parser.ts'), 'utf8')).toBe(parser);
    expect(readFileSync(join(dir, 'traceql.parser.terms.ts'), 'utf8')).toBe(terms);
  });
});
