// goMediaType (e2e/harness/counting-proxy.ts): the bypass suites' oracle reads a forwarded body only
// where Go's ParseForm would. Expected values: what Go 1.26's net/http ParseForm read for each
// Content-Type (a POST body "match[]=up"; true = PostForm held it), recorded from a Go program.
import { describe, expect, it } from 'vitest';
import { goMediaType } from '../../e2e/harness/counting-proxy.ts';

const GO_PARSES_BODY: readonly [contentType: string, parsed: boolean][] = [
  ['', false],
  [' application/x-www-form-urlencoded ', true],
  ['APPLICATION/X-WWW-FORM-URLENCODED', true],
  ['application /x-www-form-urlencoded', false],
  ['application/x-www-form-urlencoded', true],
  ['application/x-www-form-urlencoded\t', true],
  ['application/x-www-form-urlencoded, text/plain', false],
  ['application/x-www-form-urlencoded;', true],
  ['application/x-www-form-urlencoded; a*0=x; a*0=y', false],
  ['application/x-www-form-urlencoded; a*0=x; a*1=y', true],
  ['application/x-www-form-urlencoded; a=1; A=2', false],
  ["application/x-www-form-urlencoded; a=x; a*=utf-8''y", true],
  ['application/x-www-form-urlencoded; charset', true],
  ['application/x-www-form-urlencoded; charset = utf-8', true],
  ["application/x-www-form-urlencoded; charset*=utf-8''x; charset=y", true],
  ['application/x-www-form-urlencoded; charset="unterminated', true],
  ['application/x-www-form-urlencoded; charset=utf-8', true],
  ['application/x-www-form-urlencoded; charset=utf-8; charset=utf-8', true],
  ['application/x-www-form-urlencoded; charset=utf-8; charset=UTF-8', false],
  ['application/x-www-form-urlencoded;charset="utf-8";charset=x', false],
  ['application/x-www-form-urlencoded;charset="utf-8";charset=utf-8', true],
];

describe('goMediaType reads a Content-Type as Go 1.26 net/http does for form bodies', () => {
  it.each(GO_PARSES_BODY)('%j → body parsed: %s', (contentType, parsed) => {
    expect(goMediaType(contentType) === 'application/x-www-form-urlencoded').toBe(parsed);
  });
});
