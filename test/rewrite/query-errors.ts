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

/** The code of the typed error `f` throws (QueryError or GatewayError), or undefined when it throws nothing. */
export function thrownCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
    if (typeof code === 'string') return code;
    throw e;
  }
  return undefined;
}
