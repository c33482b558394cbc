import type { Socket } from 'node:net';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import type { MtlsProviderConfig } from '../config/schema.ts';
import type { Subject } from '../policy/decision.ts';
import { LruCache } from '../util/lru.ts';
import { InvalidTokenError } from './jwt.ts';
import { UNDECIDED, type ClientCertificate, type Credentials, type IdentityCacheStats, type IdentitySource, type TlsInfo } from './source.ts';

/** Subject-alternative-name entries as Node prints them: `DNS:a, URI:spiffe://x, email:"quoted, value"`. */
const SAN_ENTRY = /(DNS|URI|email|IP Address|DirName|othername|Registered ID):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;

export function parseSubjectAltName(san: string | undefined): { dns: string[]; uri: string[]; email: string[] } {
  const out = { dns: [] as string[], uri: [] as string[], email: [] as string[] };
  if (san === undefined || san === '') return out;
  for (const m of san.matchAll(SAN_ENTRY)) {
    const raw = m[2]!;
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        continue;
      }
    }
    if (value === '') continue;
    if (m[1] === 'DNS') out.dns.push(value);
    else if (m[1] === 'URI') out.uri.push(value);
    else if (m[1] === 'email') out.email.push(value);
  }
  return out;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]).filter((s) => s !== '');

/** The parts of a peer certificate identity uses. */
export function clientCertificateOf(pc: PeerCertificate): ClientCertificate {
  const subject = pc.subject as unknown as Record<string, string | string[] | undefined>;
  const issuer = (pc.issuer ?? {}) as unknown as Record<string, string | string[] | undefined>;
  const san = parseSubjectAltName(pc.subjectaltname);
  return {
    cn: list(subject['CN'])[0],
    cnCount: list(subject['CN']).length,
    ou: list(subject['OU']),
    o: list(subject['O']),
    email: list(subject['emailAddress']),
    dns: san.dns,
    uri: san.uri,
    sanEmail: san.email,
    issuerCN: list(issuer['CN'])[0],
    serialNumber: pc.serialNumber,
    fingerprint256: pc.fingerprint256,
    validTo: pc.valid_to,
  };
}

/**
 * What the TLS layer established about the client: a certificate only counts
 * when the socket is `authorized`, i.e. the chain verified against the
 * listener's clientCA (the server accepts the handshake either way, so that
 * refusals are 401s in the backend's format rather than TLS alerts).
 */
export function tlsInfoOf(socket: Socket): TlsInfo | undefined {
  if (!(socket instanceof TLSSocket)) return undefined;
  const pc = socket.getPeerCertificate();
  const presented = pc !== null && typeof pc === 'object' && Object.keys(pc).length > 0;
  if (!presented) return { authorized: false, certificate: undefined, error: undefined };
  // `authorized` is the first handshake's: after a renegotiation (refused by the listener, src/server/tls.ts)
  // it would stay true for whatever certificate came next. So a verification error counts whenever it is
  // set, and a connection keeps the certificate it was first verified with.
  if (!socket.authorized || socket.authorizationError != null) {
    return { authorized: false, certificate: undefined, error: String(socket.authorizationError ?? 'certificate not verified') };
  }
  const pinned = firstCertificate.get(socket);
  if (pinned === undefined) firstCertificate.set(socket, pc.fingerprint256);
  else if (pinned !== pc.fingerprint256) return { authorized: false, certificate: undefined, error: 'the client certificate changed on this connection' };
  return { authorized: true, certificate: clientCertificateOf(pc), error: undefined };
}

/** The fingerprint of the certificate each TLS connection was first verified with. */
const firstCertificate = new WeakMap<TLSSocket, string>();

type Field = MtlsProviderConfig['subjectFrom'][number];

/**
 * Whether a verified certificate is past its notAfter now. The TLS layer checks
 * validity at the handshake only: a keep-alive connection (or a tail upgraded on
 * one) would otherwise go on authenticating a certificate that has expired. A
 * notAfter that does not parse counts as expired (fail closed).
 */
export function certificateExpired(cert: ClientCertificate, now = Date.now()): boolean {
  const t = Date.parse(cert.validTo);
  return !Number.isFinite(t) || t <= now;
}

/**
 * Whether `value` has the syntax of what field `kind` holds: a URI (RFC 3986
 * scheme then ":", so `spiffe://…`, `urn:…`), an email address (an "@"), a DNS
 * name (labels of letters, digits, "-" and a leading "*", at least two: a
 * single word is no DNS-looking name). The CN has no syntax of its own.
 */
function looksLike(kind: Field, value: string): boolean {
  switch (kind) {
    case 'uri':
      return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value);
    case 'email':
      return value.includes('@');
    case 'dns':
      return /^(\*|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\.?$/.test(value);
    case 'cn':
      return false;
  }
}

function valueOf(cert: ClientCertificate, f: Field): string | undefined {
  return f === 'cn' ? cert.cn : f === 'dns' ? cert.dns[0] : f === 'uri' ? cert.uri[0] : (cert.sanEmail[0] ?? cert.email[0]);
}

/**
 * The first present field of `fields`, and which one it is. A fallback (a later
 * field, used because the earlier ones are absent) whose value has the syntax of
 * an earlier field's kind is refused: with `[uri, cn]`, a certificate without a
 * URI SAN but with CN `spiffe://td/admin` would otherwise be the subject of that
 * URI identity — and a CA that copies a requested subject checks CNs less, if at
 * all, than the SANs it issues.
 */
function firstOf(cert: ClientCertificate, fields: readonly Field[], what: string): { value: string; field: Field } | undefined {
  for (const [i, f] of fields.entries()) {
    const v = valueOf(cert, f);
    if (v === undefined || v === '') continue;
    const imitated = fields.slice(0, i).find((earlier) => looksLike(earlier, v));
    if (imitated !== undefined) {
      throw new InvalidTokenError(`client certificate has no ${imitated} for the ${what}, and its ${f} ${JSON.stringify(v)} looks like one (${fields.join(', ')}: a fallback must not imitate an earlier field)`);
    }
    return { value: v, field: f };
  }
  return undefined;
}

/**
 * `type: mtls`: the client certificate the listener verified against
 * `server.tls.clientCA` becomes the subject. `sub`/`username` come from the
 * first present field of `subjectFrom` / `usernameFrom` (CN, SAN DNS, URI or
 * email; a fallback that looks like an earlier field is refused, firstOf);
 * groups from the subject's OU values (only with `ouAsGroups`) plus any
 * `mapping` entry for that subject. A certificate that failed verification is
 * a 401; no certificate means this source has nothing to judge.
 */
export class MtlsSource implements IdentitySource {
  readonly name = 'mtls';
  readonly #cfg: MtlsProviderConfig;
  readonly #mapping: Map<string, { groups: string[]; roles: string[] }>;
  /**
   * Subjects by certificate fingerprint: a client's requests share one Subject
   * object, so its decisions are cached (the decision cache is keyed by the
   * Subject instance) instead of filling that cache with one entry per request.
   */
  readonly #subjects = new LruCache<string, Subject>(10_000);

  constructor(cfg: MtlsProviderConfig) {
    this.#cfg = cfg;
    this.#mapping = new Map();
    for (const m of cfg.mapping) {
      const e = this.#mapping.get(m.subject) ?? { groups: [], roles: [] };
      e.groups.push(...m.groups);
      e.roles.push(...m.roles);
      this.#mapping.set(m.subject, e);
    }
  }

  cacheStats(): IdentityCacheStats {
    return { cache: 'identity_mtls', hits: this.#subjects.hits, misses: this.#subjects.misses, size: this.#subjects.size };
  }

  /** `authenticate`'s answer without waiting: no client certificate, or one mapped before (IdentitySource.peek). */
  peek(creds: Credentials): Subject | undefined | typeof UNDECIDED {
    const tls = creds.tls;
    if (tls === undefined) return undefined;
    if (!tls.authorized || tls.certificate === undefined) return tls.error !== undefined ? UNDECIDED : undefined;
    // An expired one is refused by authenticate (with its reason).
    if (certificateExpired(tls.certificate)) return UNDECIDED;
    const fingerprint = tls.certificate.fingerprint256;
    return (fingerprint === '' ? undefined : this.#subjects.peek(fingerprint)) ?? UNDECIDED;
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const tls = creds.tls;
    if (tls === undefined) return undefined;
    if (!tls.authorized || tls.certificate === undefined) {
      if (tls.error !== undefined) throw new InvalidTokenError(`client certificate not verified against clientCA: ${tls.error}`);
      return undefined;
    }
    const cert = tls.certificate;
    if (certificateExpired(cert)) throw new InvalidTokenError('client certificate expired (notAfter passed since the TLS handshake)');
    const known = cert.fingerprint256 === '' ? undefined : this.#subjects.get(cert.fingerprint256);
    if (known !== undefined) return known;
    // Which CN names the holder differs between readers (Node takes the first, Go's x509 the last):
    // a CA that copies a requested subject could be steered, so such a certificate names no one.
    if ((cert.cnCount ?? 0) > 1) throw new InvalidTokenError(`client certificate has ${cert.cnCount} CN attributes; exactly one is accepted`);
    const from = firstOf(cert, this.#cfg.subjectFrom, 'subject');
    if (from === undefined) throw new InvalidTokenError(`client certificate has none of ${this.#cfg.subjectFrom.join(', ')} for the subject`);
    const sub = from.value;
    const userFrom = firstOf(cert, this.#cfg.usernameFrom ?? this.#cfg.subjectFrom, 'username');
    const username = userFrom?.value ?? sub;
    // `users` entries match a trusted username as they match `sub`: only one read from the field `sub` was
    // read from is the CA's word as much as `sub` is. Another field (a CN a CA copies from the request next to
    // the URI SAN it issues) would let a holder name another workload (its SPIFFE id as CN): display only.
    const usernameTrusted = userFrom === undefined || userFrom.field === from.field;
    const mapped = this.#mapping.get(sub);
    if (this.#cfg.requireMapping && mapped === undefined) throw new InvalidTokenError(`client certificate subject "${sub}" is not in mtls.mapping`);
    // OU values are groups only when the operator said so (ouAsGroups, unset: false): a CA that copies a
    // requested subject into certificates would let its holder choose them.
    const groups = [...new Set([...(this.#cfg.ouAsGroups === true ? cert.ou : []), ...(mapped?.groups ?? [])])];
    const roles = [...new Set(mapped?.roles ?? [])];
    const email = cert.sanEmail[0] ?? cert.email[0];
    const subject: Subject = Object.freeze({
      sub,
      username,
      ...(email !== undefined ? { email } : {}),
      groups: Object.freeze(groups),
      roles: Object.freeze(roles),
      ...(cert.issuerCN !== undefined ? { issuer: cert.issuerCN } : {}),
      auth: 'mtls',
      // Issued by the operator's client CA (`server.tls.clientCA`), not chosen by the holder: when it is the
      // subject's own field (see usernameTrusted above).
      ...(usernameTrusted ? { usernameTrusted: true } : {}),
      claims: Object.freeze({
        // The field `sub` was read from (subjectFrom): a policy may require it.
        subjectField: from.field,
        cn: cert.cn ?? null,
        ou: cert.ou,
        o: cert.o,
        dns: cert.dns,
        uri: cert.uri,
        email: [...cert.sanEmail, ...cert.email],
        serialNumber: cert.serialNumber,
        fingerprint256: cert.fingerprint256,
        notAfter: cert.validTo,
        issuer: cert.issuerCN ?? null,
      }),
    });
    // Until the certificate expires, at most a minute: a changed mapping comes with a reload (a new source).
    const ttl = Math.min(60_000, Date.parse(cert.validTo) - Date.now());
    if (cert.fingerprint256 !== '' && ttl > 0) this.#subjects.set(cert.fingerprint256, subject, ttl);
    return subject;
  }
}
