import { BlockList, isIP } from 'node:net';

/** 127.0.0.0/8 and ::1; BlockList also matches IPv4-mapped IPv6 (::ffff:127.0.0.1) against the IPv4 subnet. */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * Whether a URL's hostname (as `URL` gives it: IPv6 in brackets, IPv4 and
 * IPv6 normalised) names this machine: `localhost` and `*.localhost`
 * (RFC 6761 §6.3; a trailing dot included), 127.0.0.0/8, `::1`, and the
 * IPv4-mapped spellings of 127.0.0.0/8 (`[::ffff:127.0.0.1]`, which `URL`
 * writes as `[::ffff:7f00:1]`). Pure; no DNS.
 */
export function isLoopbackHost(hostname: string): boolean {
  let host = hostname.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const family = isIP(host);
  if (family === 4) return LOOPBACK.check(host, 'ipv4');
  if (family === 6) return LOOPBACK.check(host, 'ipv6');
  return false;
}

/** Whether `url` is plain HTTP to a host other than this machine (false for text that is no URL). */
export function cleartextRemote(url: string | undefined): boolean {
  if (url === undefined) return false;
  try {
    const u = new URL(url);
    return u.protocol === 'http:' && !isLoopbackHost(u.hostname);
  } catch {
    return false;
  }
}
