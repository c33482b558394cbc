import { describe, expect, it } from 'vitest';
import { TextMemo } from '../../src/util/text-memo.ts';

describe('TextMemo', () => {
  it('answers what the function answers, computing each long text once while it is kept', () => {
    let calls = 0;
    const memo = new TextMemo((s) => {
      calls++;
      return s.toUpperCase();
    });
    const long = 'rate(http_requests_total[5m]) by namespace';
    expect(memo.get(long)).toBe(long.toUpperCase());
    expect(memo.get(long)).toBe(long.toUpperCase());
    expect(calls).toBe(1);
    // Short texts are converted every time.
    expect(memo.get('up')).toBe('UP');
    expect(memo.get('up')).toBe('UP');
    expect(calls).toBe(3);
  });

  it('stays correct past its bound (entries), and keeps no text over 16 KiB', () => {
    let calls = 0;
    const memo = new TextMemo((s) => {
      calls++;
      return `<${s}>`;
    });
    const texts = Array.from({ length: 3000 }, (_, i) => `a long enough query text number ${i}`);
    for (const t of texts) expect(memo.get(t)).toBe(`<${t}>`);
    for (const t of texts) expect(memo.get(t)).toBe(`<${t}>`);
    // 1024 entries at most: the second pass could not find every text kept.
    expect(calls).toBeGreaterThan(3000);
    const huge = 'x'.repeat(17 * 1024);
    calls = 0;
    memo.get(huge);
    memo.get(huge);
    expect(calls).toBe(2);
  });
});
