import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareCodePoints, mergeListAnswers } from '../../src/backends/list-answers.ts';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
// Characters around the orders that differ: ASCII, BMP below and above the surrogates, astral.
const char = fc.constantFrom('a', 'z', 'é', '\u{d7ff}', '\u{e000}', '\u{ffff}', '\u{10000}', '🚀', '\u{10ffff}', '');
const text = fc.array(char, { maxLength: 5 }).map((cs) => cs.join(''));

describe('compareCodePoints', () => {
  it('orders as Go compares strings (UTF-8 bytes), which JS `<` does not for astral characters', () => {
    fc.assert(
      fc.property(text, text, (a, b) => {
        expect(Math.sign(compareCodePoints(a, b))).toBe(Math.sign(Buffer.compare(utf8(a), utf8(b))));
      }),
      { numRuns: 2000 },
    );
    // The case that tells them apart: U+FFFF sorts before U+10000 in Go, after it in UTF-16.
    expect(compareCodePoints('\u{ffff}', '\u{10000}')).toBeLessThan(0);
    expect('\u{ffff}' < '\u{10000}').toBe(false);
  });
});

describe('mergeListAnswers', () => {
  it('the sorted union of the lists, each value once', () => {
    const out = mergeListAnswers([
      { status: 'success', data: ['b', 'a', '\u{10000}'] },
      { status: 'success', data: ['c', 'a', '\u{ffff}'] },
      { status: 'success', data: [] },
    ]);
    expect(out).toEqual({ status: 'success', data: ['a', 'b', 'c', '\u{ffff}', '\u{10000}'] });
  });

  it('an answer of another shape fails the whole (→ 502), never a partial list', () => {
    for (const bad of [null, 'x', { status: 'error', data: [] }, { status: 'success' }, { status: 'success', data: ['a', 1] }, { status: 'success', data: { a: 1 } }]) {
      expect(() => mergeListAnswers([{ status: 'success', data: ['a'] }, bad])).toThrow(/could not be read/);
    }
  });
});
