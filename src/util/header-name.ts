/**
 * A header name as backends may read it: case-insensitively and with `_` as `-`
 * (CGI/WSGI-style servers and some proxies map both to the same variable), so
 * `X_Scope_OrgID` cannot stand in for the owned `X-Scope-OrgID`.
 */
export function headerKey(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replace(/_/g, '-') : lower;
}

/**
 * The header a client names the team it acts as with (RequestInfo.team).
 * Read by the gateway, never forwarded.
 */
export const TEAM_HEADER = 'x-lbac-team';

/**
 * How many header lines named `lowerName` a request carried (Node's
 * rawHeaders: name, value, name, value, …). Node joins repeats of most
 * headers with ", " or keeps only the first, so only the raw lines show them.
 */
export function headerLines(rawHeaders: readonly string[], lowerName: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) n++;
  }
  return n;
}

/** One character of an RFC 9110 token (tchar): header names, auth schemes, WebSocket subprotocols. */
export const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

/** An HTTP header name, or any other RFC 9110 token (an auth scheme). */
export const HEADER_NAME = new RegExp(`^${TCHAR}+$`);

/**
 * Characters a header value must not hold: CR/LF/NUL (header injection) and the
 * other controls Node's http client rejects anyway (all C0 but HTAB, DEL) and
 * anything beyond Latin-1, which cannot be sent as a header byte.
 */
export const BAD_HEADER_VALUE_CHAR = /[\u0000-\u0008\u000a-\u001f\u007f]|[^\u0000-\u00ff]/u;

/** What BAD_HEADER_VALUE_CHAR matches, for messages (which never repeat the value). */
export const BAD_HEADER_VALUE_TEXT = 'a control character (CR, LF, NUL, …) or a character beyond Latin-1 (U+00FF)';

/**
 * Headers a policy (or a team) may not set: they frame the HTTP message or
 * belong to the connection (setting them could desynchronise the upstream
 * connection), or name the upstream host.
 */
export const FORBIDDEN_POLICY_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  'expect',
]);

/**
 * A header value that names nothing: empty, or "|" joining no tenant (some
 * stores read a missing tenant as their default one: Thanos' THANOS-TENANT).
 */
export function isEmptyHeaderValue(value: string): boolean {
  return value.split('|').every((part) => part.trim() === '');
}

/** Why a policy may not set this header (name or value), or undefined. */
export function policyHeaderProblem(name: string, value: string): string | undefined {
  if (!HEADER_NAME.test(name)) return `${JSON.stringify(name)} is not a valid HTTP header name`;
  if (FORBIDDEN_POLICY_HEADERS.has(name.toLowerCase())) return `the policy may not set ${JSON.stringify(name)}`;
  if (BAD_HEADER_VALUE_CHAR.test(value)) return `the value of ${JSON.stringify(name)} contains ${BAD_HEADER_VALUE_TEXT}`;
  return undefined;
}
