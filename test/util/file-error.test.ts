import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fileErrorCode } from '../../src/util/file-error.ts';

const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('did not throw');
};

describe('fileErrorCode', () => {
  it('is the system error code of a failed read, not the message that repeats the path', () => {
    expect(fileErrorCode(thrown(() => readFileSync('/nonexistent/secret-dir/file')))).toBe('ENOENT');
    expect(fileErrorCode(thrown(() => readFileSync('/')))).toBe('EISDIR');
  });

  it('falls back to the message (or the text) of an error without a code', () => {
    expect(fileErrorCode(new Error('boom'))).toBe('boom');
    expect(fileErrorCode('plain')).toBe('plain');
    expect(fileErrorCode(null)).toBe('null');
    expect(fileErrorCode(Object.assign(new Error('m'), { code: '' }))).toBe('m');
  });
});
