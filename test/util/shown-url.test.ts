// URLs as logs and errors show them: no credentials, no query (a pre-signed
// URL's signature is in its query), no fragment. Fetch errors quote the URL
// they were given, so error text and logged errors are redacted too.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/server/index.ts';
import { redactErrorUrls, redactUrls, shownUrl } from '../../src/util/shown-url.ts';

describe('shownUrl', () => {
  it.each([
    ['https://user:pa55@bundles.example/p/b.tar.gz?sig=x#f', 'https://bundles.example/p/b.tar.gz'],
    ['http://127.0.0.1:9090/prefix/', 'http://127.0.0.1:9090/prefix/'],
    ['https://idp.example/realms/a?', 'https://idp.example/realms/a'],
  ])('%s → %s', (url, shown) => expect(shownUrl(url)).toBe(shown));
  it('a text that is no URL is not shown', () => expect(shownUrl('not a url')).toBe('(unparsable URL)'));
});

describe('redactUrls', () => {
  it('every URL in a text, wherever it sits', () => {
    const text = 'Request cannot be constructed from a URL that includes credentials: https://reader:PASSW0RD@b.example/x.tar.gz?X-Amz-Signature=PRESIGNED (then "http://a:SECRET2@c.example:8/y?t=TOKEN")';
    const out = redactUrls(text);
    expect(out).toBe('Request cannot be constructed from a URL that includes credentials: https://b.example/x.tar.gz (then "http://c.example:8/y")');
    for (const s of ['PASSW0RD', 'PRESIGNED', 'SECRET2', 'TOKEN']) expect(out).not.toContain(s);
  });
  it('a URL that does not parse keeps only what cannot be a secret', () => {
    expect(redactUrls('bad http://u:p@[::zz]/x?q=s')).toBe('bad http://[::zz]/x');
  });
  it('text without URLs is unchanged', () => expect(redactUrls('timed out (after 2000 ms)')).toBe('timed out (after 2000 ms)'));
  it('serialised errors: message, stack and causes', () => {
    const e = { message: 'fetch https://u:PW@h/x?s=SIG', stack: 'TypeError: https://u:PW@h/x?s=SIG\n at f', cause: { message: 'https://u:PW@h/x?s=SIG' }, code: 7 };
    const out = JSON.stringify(redactErrorUrls(e));
    expect(out).not.toMatch(/PW|SIG/);
    expect(out).toContain('https://h/x');
    expect(redactErrorUrls(e).code).toBe(7);
  });
});

describe('the gateway logger', () => {
  it('never logs the raw request a malformed one fails with (its Authorization header), only what was wrong', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => void (lines.push(String(chunk)), done()) });
    const captured = createLogger('trace', sink);
    // What Node's HTTP parser hands Fastify's clientError handler, which logs it at trace.
    const err = Object.assign(new Error('Parse Error: Invalid header value char'), {
      code: 'HPE_INVALID_HEADER_TOKEN',
      bytesParsed: 40,
      rawPacket: Buffer.from('GET /q?query=up HTTP/1.1\r\nAuthorization: Bearer SECRET-TOKEN\r\nX: \u0000\r\n\r\n'),
    });
    captured.trace({ err }, 'client error');
    const line = JSON.parse(lines.join('')) as { err: Record<string, unknown> };
    expect(line.err).not.toHaveProperty('rawPacket');
    expect(line.err).toMatchObject({ code: 'HPE_INVALID_HEADER_TOKEN', bytesParsed: 40 });
    expect(lines.join('')).not.toMatch(/SECRET|83,69,67/);
  });

  it('logs errors (and their causes) with URLs redacted', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => void (lines.push(String(chunk)), done()) });
    const captured = createLogger('info', sink);
    const cause = new TypeError('Request cannot be constructed from a URL that includes credentials: https://r:PASSW0RD@idp.example/jwks?sig=SIGNED');
    captured.error({ err: new Error('identity provider key set unavailable', { cause }) }, 'failed');
    const out = lines.join('');
    expect(out).toContain('idp.example/jwks');
    expect(out).not.toMatch(/PASSW0RD|SIGNED/);
  });
});
