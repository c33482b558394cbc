/**
 * A header name as backends may read it: case-insensitively and with `_` as `-`
 * (CGI/WSGI-style servers and some proxies map both to the same variable), so
 * `X_Scope_OrgID` cannot stand in for the owned `X-Scope-OrgID`.
 */
export function headerKey(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replace(/_/g, '-') : lower;
}
