// FormParams must read, edit and write parameters as the WHATWG URL standard
// says (application/x-www-form-urlencoded), which URLSearchParams implements:
// the gateway enforces what it parsed and forwards what it serialises. The
// oracle for parsing is the standard's algorithm written out over bytes below;
// Node's URLSearchParams is the oracle for edits and serialisation, and for
// parsing ASCII text (it misreads some names with non-ASCII text, see the last test).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { mergeParams } from '../../src/backends/params.ts';

/** Pieces that exercise every branch: separators, escapes (valid, truncated, invalid UTF-8), "+", unpaired surrogates. */
const PIECES = [
  'a', 'query', 'match[]', '=', '&', '&&', '+', '%', '%2', '%2B', '%2b', '%20', '%26', '%3D', '%zz', '%C3%A9', '%C3', '%E2%82', '%E2%82%AC',
  '%ED%A0%80', '%F0%9F%98%80', '%EF%BB%BF', '%00', '?', ' ', 'é', '😀', '\uD800', '\uDC00', '\u0000', '~', '!', '(', ')', "'", '*', '.', '-', '_',
  '{', '}', '"', '\\', ';', '#', '/', ':', '1700000000',
];
const encoded = fc.array(fc.constantFrom(...PIECES), { maxLength: 24 }).map((xs) => xs.join(''));
/** Names and values as code would set them (any string, unpaired surrogates included). */
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.array(fc.constantFrom(...PIECES), { maxLength: 6 }).map((xs) => xs.join('')));

type Edit = { op: 'append' | 'set'; name: string; value: string } | { op: 'delete'; name: string };
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ op: fc.constant('append' as const), name: text, value: text }),
  fc.record({ op: fc.constant('set' as const), name: fc.oneof(text, fc.constantFrom('a', 'query', 'match[]')), value: text }),
  fc.record({ op: fc.constant('delete' as const), name: fc.oneof(text, fc.constantFrom('a', 'query', 'match[]')) }),
);

/** The standard's parser, step by step: UTF-8 bytes, split on "&", first "=", "+" → space, percent-decode, UTF-8 decode. */
function standardParse(input: string): [string, string][] {
  const text = input.startsWith('?') ? input.slice(1) : input;
  const decode = (part: string): string => {
    // Bytes as latin1 characters, so a regex can percent-decode them; then back to bytes and UTF-8.
    const bytes = Buffer.from(part.replaceAll('+', ' '), 'utf8').toString('latin1');
    return Buffer.from(bytes.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  };
  return text
    .split('&')
    .filter((seq) => seq !== '')
    .map((seq) => {
      const eq = seq.indexOf('=');
      return eq < 0 ? [decode(seq), ''] : [decode(seq.slice(0, eq)), decode(seq.slice(eq + 1))];
    });
}

const isAscii = (s: string): boolean => /^[\u0000-\u007f]*$/.test(s);

describe('FormParams', () => {
  it('keepOnly keeps the pairs of the given names, in order, as deleting every other name does', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'é'), fc.string()), { maxLength: 30 }), fc.subarray(['a', 'b', 'c', 'd', 'é']), (pairs, keep) => {
        const text = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const fast = new FormParams(text);
        fast.keepOnly(new Set(keep));
        const slow = new URLSearchParams(text);
        for (const name of new Set(pairs.map(([k]) => k))) if (!keep.includes(name)) slow.delete(name);
        expect([...fast]).toEqual([...slow]);
      }),
    );
  });

  it('parses any input as the standard does, and as URLSearchParams does ASCII input', () => {
    fc.assert(
      fc.property(encoded, (s) => {
        const ours = new FormParams(s);
        expect([...ours]).toEqual(standardParse(s));
        // Again: long components now come from the memo of recent ones.
        expect([...new FormParams(s)]).toEqual([...ours]);
        expect(new FormParams(s).toString()).toBe(ours.toString());
        if (isAscii(s)) {
          const theirs = new URLSearchParams(s);
          expect([...ours]).toEqual([...theirs]);
          expect(ours.toString()).toBe(theirs.toString());
        }
      }),
      { numRuns: 4000 },
    );
  });

  it('answers get/getAll/has, applies append/set/delete and serialises as URLSearchParams does', () => {
    fc.assert(
      fc.property(encoded, fc.array(edit, { maxLength: 8 }), text, (s, edits, probe) => {
        const ours = new FormParams(s);
        const theirs = new URLSearchParams();
        for (const [n, v] of standardParse(s)) theirs.append(n, v);
        for (const e of edits) {
          if (e.op === 'delete') {
            ours.delete(e.name);
            theirs.delete(e.name);
          } else {
            ours[e.op](e.name, e.value);
            theirs[e.op](e.name, e.value);
          }
        }
        expect([...ours]).toEqual([...theirs]);
        expect(ours.toString()).toBe(theirs.toString());
        expect(ours.size).toBe(theirs.size);
        for (const name of [probe, 'a', 'query', ...edits.map((e) => e.name)]) {
          expect(ours.get(name)).toBe(theirs.get(name));
          expect(ours.getAll(name)).toEqual(theirs.getAll(name));
          expect(ours.has(name)).toBe(theirs.has(name));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('reads back what it writes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(text, text), { maxLength: 6 }), (pairs) => {
        const p = new FormParams();
        for (const [n, v] of pairs) p.append(n, v);
        expect([...new FormParams(p.toString())]).toEqual([...p]);
      }),
      { numRuns: 2000 },
    );
  });

  it('merges a form body and a query string, body first (as Go lists r.Form)', () => {
    fc.assert(
      fc.property(encoded, encoded, (body, search) => {
        const merged = mergeParams(search, body);
        const expected = body === '' ? standardParse(search) : [...standardParse(body), ...standardParse(search)];
        expect([...merged]).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('examples: lenient escapes, "+", and what form-encoding escapes', () => {
    expect([...new FormParams('?a=%zz&b=%E2%82&c=1+2%2B3&&d&e=%C3%A9%ED%A0%80')]).toEqual([
      ['a', '%zz'],
      ['b', '\uFFFD'],
      ['c', '1 2+3'],
      ['d', ''],
      ['e', 'é\uFFFD\uFFFD\uFFFD'],
    ]);
    const p = new FormParams();
    p.append('query', `rate(x{a!~"b|c"}[5m]) * 2 ~ 'é' \uD800`);
    expect(p.toString()).toBe('query=rate%28x%7Ba%21%7E%22b%7Cc%22%7D%5B5m%5D%29+*+2+%7E+%27%C3%A9%27+%EF%BF%BD');
  });

  it("where Node's URLSearchParams departs from the standard, the standard is followed", () => {
    // Node 24 reads this name (escapes, then non-ASCII text, no "=") as " \uFFFD%zz"; the standard keeps the é.
    expect([...new FormParams('%20é%zz')]).toEqual([[' é%zz', '']]);
    expect([...new FormParams('%20é%zz')]).toEqual(standardParse('%20é%zz'));
  });
});
