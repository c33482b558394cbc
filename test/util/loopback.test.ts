import { describe, expect, it } from 'vitest';
import { cleartextRemote, isLoopbackHost } from '../../src/util/loopback.ts';

describe('isLoopbackHost', () => {
  it('every spelling of this machine, as URL gives the hostname', () => {
    for (const url of ['http://localhost', 'http://LocalHost.', 'http://a.b.localhost', 'http://127.0.0.1', 'http://127.255.0.9', 'http://127.1', 'http://2130706433', 'http://[::1]', 'http://[0::1]', 'http://[::ffff:127.0.0.1]', 'http://[::ffff:7f00:2]']) {
      expect(isLoopbackHost(new URL(url).hostname), url).toBe(true);
    }
  });
  it('not: other addresses and names that merely contain a loopback spelling', () => {
    for (const url of ['http://128.0.0.1', 'http://[::ffff:10.0.0.1]', 'http://[::127.0.0.1]', 'http://[::2]', 'http://localhost.example.com', 'http://notlocalhost', 'http://127.0.0.1.nip.io', 'http://0.0.0.0']) {
      expect(isLoopbackHost(new URL(url).hostname), url).toBe(false);
    }
  });
  it('cleartextRemote: plain HTTP to another host only', () => {
    expect(cleartextRemote('http://idp.example.com/x')).toBe(true);
    expect(cleartextRemote('http://[::ffff:127.0.0.1]:8080/x')).toBe(false);
    expect(cleartextRemote('https://idp.example.com/x')).toBe(false);
    expect(cleartextRemote('not a url')).toBe(false);
    expect(cleartextRemote(undefined)).toBe(false);
  });
});
