import { QueryError } from '../../src/errors.ts';

/** The QueryError code `f` throws, or 'ok'; any other exception propagates (a bug, not a refusal). */
export function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof QueryError) return e.code;
    throw e;
  }
  return 'ok';
}

/** The QueryError `f` throws; fails the test when it throws nothing or something else. */
export function errorOf(f: () => unknown): QueryError {
  try {
    f();
  } catch (e) {
    if (e instanceof QueryError) return e;
    throw e;
  }
  throw new Error('expected a QueryError');
}
