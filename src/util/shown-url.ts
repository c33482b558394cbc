/**
 * URLs as they may be shown (logs, /readyz, metrics labels, error answers):
 * without credentials, query string or fragment. A configured URL may carry
 * a password (`https://user:pass@host`) or a pre-signed query
 * (`?X-Amz-Signature=…`), and fetch errors quote the URL they were given.
 * Pure; no I/O.
 */

/** `url` without userinfo, query or fragment; a placeholder if it does not parse. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(unparsable URL)';
  }
}

// An absolute URL inside free text: scheme, "//", then anything up to a blank or a quote/bracket.
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/** `text` with every absolute URL in it shown as shownUrl() shows it. */
export function redactUrls(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_IN_TEXT, (u) => {
    const shown = shownUrl(u);
    // A URL that does not parse may still hold a secret after its host: keep only what precedes "@", "?" or "#".
    return shown === '(unparsable URL)' ? u.replace(/\/\/[^/]*@/, '//').replace(/[?#].*$/, '') : shown;
  });
}

/**
 * A serialised error (pino's `err`) with every string in it passed through
 * redactUrls: message, stack, and those of its causes.
 */
export function redactErrorUrls<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactUrls(value) as T;
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactErrorUrls(v, depth + 1)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactErrorUrls(v, depth + 1);
  return out as T;
}
