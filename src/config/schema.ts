import { z } from 'zod';
import { BAD_HEADER_VALUE_CHAR, BAD_HEADER_VALUE_TEXT, HEADER_NAME, headerKey, isEmptyHeaderValue, policyHeaderProblem } from '../util/header-name.ts';

/**
 * The configuration schema: one source of truth for validation, TypeScript
 * types and the generated reference in docs/configuration.md. Objects are strict:
 * an unknown key is an error (a typo must not silently disable a setting).
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:8080"')
  .describe('Address to listen on, "host:port".');

/**
 * Text sent verbatim in a header (upstream headers, a bearer token, sigv4's key id and session token) must be
 * what the HTTP client can send, the rule policy decision headers follow: refused at load, not with a 502 on
 * every request. Checked after ${ENV} interpolation (config/load.ts interpolates before validating); the
 * message never repeats the value, which may be a secret.
 */
const sendableInHeader = (v: string) => !BAD_HEADER_VALUE_CHAR.test(v);
const UNSENDABLE_IN_HEADER = `must not contain ${BAD_HEADER_VALUE_TEXT}: it is sent in a header`;
const headerName = z.string().regex(HEADER_NAME, 'not a valid HTTP header name');
const headerValue = z.string().refine(sendableInHeader, `header values ${UNSENDABLE_IN_HEADER}`);
const headerMap = z.record(headerName, headerValue);
/**
 * Headers a team or the admins set: what the decision validator accepts
 * (refused at load, not on every request), each with a value: an empty one
 * (an unset ${VAR}, or "|") would send no tenant at all.
 */
const policyHeaderMap = z.record(headerName, z.string()).superRefine((headers, ctx) => {
  for (const [name, value] of Object.entries(headers)) {
    const problem = policyHeaderProblem(name, value) ?? (isEmptyHeaderValue(value) ? `the value of ${JSON.stringify(name)} is empty (an unset \${VAR}?)` : undefined);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, path: [name] });
  }
});

export const serverTlsSchema = z
  .strictObject({
    cert: z.string().min(1).describe('PEM certificate (chain) file of the listener (relative to the config file).'),
    key: z.string().min(1).describe('PEM private key file (relative to the config file).'),
    clientCA: z.string().min(1).optional().describe('PEM file of the CA(s) client certificates must chain to; needed by identity providers of type "mtls".'),
    requestClientCert: z
      .boolean()
      .optional()
      .describe('Ask clients for a certificate during the handshake (default: true when clientCA is set). The handshake never fails for a missing or unverified certificate: those requests get a 401 from the identity layer.'),
  })
  .refine((t) => t.requestClientCert !== true || t.clientCA !== undefined, { message: 'requestClientCert needs clientCA' })
  .describe('Listen with HTTPS (TLS) instead of plain HTTP; restart to change.');

export const serverSchema = z
  .strictObject({
    listen: hostPort.default('127.0.0.1:8080'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level.'),
    accessLog: z
      .boolean()
      .default(false)
      .describe(
        'Fastify\'s two per-request lines ("incoming request", "request completed", at info). Off by default: the audit log records every decision and every request to an upstream route refused without one (authentication included), and the lines cost about a fifth of the gateway\'s CPU per request. Failed requests are logged either way.',
      ),
    workers: z
      .union([z.number().int().min(1).max(256), z.literal('auto')])
      .default('auto')
      .describe('Worker processes sharing the listener (node:cluster), each with its own policy engine and caches; "auto" = one per CPU core (available parallelism). The admin listener is then served by the primary, with metrics summed over the workers.'),
    bodyLimitBytes: z.number().int().positive().default(1024 * 1024).describe('Largest accepted request body; larger → 413.'),
    requestTimeoutMs: z
      .number()
      .int()
      .min(1000)
      .default(30_000)
      .describe('Longest time to receive a whole request (headers and body); a client that sends slower is disconnected, so a stalled body holds no memory, socket or authenticated request for long. On a TLS listener it also bounds the handshake.'),
    sendTimeoutMs: z
      .number()
      .int()
      .min(1000)
      .default(60_000)
      .describe(
        'Once an answer is being sent, a client that takes none of it for this long is disconnected: its upstream request is cancelled and its concurrency slots are freed. Without it a client that stopped reading held them for good.',
      ),
    maxConnections: z
      .number()
      .int()
      .positive()
      .default(10_000)
      .describe(
        'Most client connections one process holds open (idle keep-alive ones included); a connection beyond it is closed at once, unanswered, and counted as shed (reason "connections"). Keeps a flood of connections from exhausting the file descriptors the upstream connections and the audit file need. Per process: server.workers multiplies it.',
      ),
    maxBufferedAnswerBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .default(256 * 1024 * 1024)
      .describe(
        'Most bytes of upstream answers one process reads whole at once (answers it filters or merges, each at most 64 MiB); a request whose answer does not fit → 503 + Retry-After. Bounds the memory many concurrent large answers (label values, series, traces) take.',
      ),
    maxQueryLength: z.number().int().positive().default(64 * 1024).describe('Longest accepted query, in bytes; longer → 400. Also the most bytes of queries (e.g. match[] values) one request may carry in all.'),
    maxQueryDepth: z.number().int().positive().default(128).describe('Deepest accepted query syntax tree; deeper → 400.'),
    adminListen: hostPort
      .optional()
      .describe('Admin listener ("host:port") serving /metrics, /healthz and /readyz; never on the main port. Unset: no admin listener (no metrics endpoint).'),
    shutdownDelayMs: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('On SIGTERM, answer /readyz with 503 for this long before closing the listener (lets load balancers stop sending traffic).'),
    shutdownTimeoutMs: z.number().int().positive().default(30_000).describe('On SIGTERM, in-flight requests get this long to finish; then the process exits anyway.'),
    tls: serverTlsSchema.optional(),
    tail: z
      .strictObject({
        maxPerSubject: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(4)
          .describe(
            'Most live tails (Loki\'s WebSocket /tail) one subject holds open at once (a subject: issuer, kind of credential — jwt, apikey, basic, mtls, … — and sub; the same sub under two kinds of credential counts twice), over all upstreams; one more → 429 with Retry-After: 5, refused before Loki is contacted. Besides the concurrency slot each tail holds (upstreams[].maxConcurrent, maxConcurrentPerSubject). Per process: server.workers multiplies it.',
          ),
        recheckIntervalMs: z
          .number()
          .int()
          .min(1000)
          .max(3_600_000)
          .default(60_000)
          .describe(
            'How often an open tail\'s credentials are judged again (a credential still cached by its source costs no provider call): refused → closed 1008, the subject changed → 1012, the provider unreachable → 1013. HTTP requests see a revoked credential within the sources\' cache TTLs; a tail within this.',
          ),
      })
      .default({ maxPerSubject: 4, recheckIntervalMs: 60_000 })
      .describe('Loki live tails (WebSocket).'),
    watchConfig: z.boolean().default(true).describe('Reload the config when its file, or a key file it names (jwksFile, clientSecretFile, the bundle\'s publicKeyFile keys), changes (as on SIGHUP).'),
    reloadDebounceMs: z.number().int().min(0).default(500).describe('File-change reloads wait until the file has been quiet this long.'),
    reloadRetry: z
      .strictObject({
        minDelayMs: z.number().int().positive().default(1000).describe('Wait before the first retry of a reload rejected for a transient cause.'),
        maxDelayMs: z.number().int().positive().default(30_000).describe('Longest wait between two retries (the cap of the doubling).'),
      })
      .refine((r) => r.minDelayMs <= r.maxDelayMs, { message: 'minDelayMs must not exceed maxDelayMs' })
      .default({ minDelayMs: 1000, maxDelayMs: 30_000 })
      .describe(
        'A reload (SIGHUP, file change) rejected for a transient cause — a file that could not be read at that moment, an identity provider or policy that could not be reached — is retried by the same process: after minDelayMs, doubling per failed retry up to maxDelayMs, until it is applied, fails for another cause (a config error is never retried), a newer reload takes over, or the process stops. See docs/operations.md#config-reload.',
      ),
    loadShedding: z
      .strictObject({
        enabled: z.boolean().default(true),
        maxEventLoopDelayMs: z.number().positive().default(1000).describe('Shed when the mean event-loop delay exceeds this (0 < x).'),
        maxEventLoopUtilization: z.number().gt(0).max(1).optional().describe('Shed when event-loop utilisation over the last sample interval exceeds this (0..1). Unset: not checked.'),
        maxHeapUsedBytes: z.number().int().positive().optional().describe('Shed when the V8 heap exceeds this. Unset: not checked.'),
        maxRssBytes: z.number().int().positive().optional().describe('Shed when the resident set exceeds this. Unset: not checked.'),
        sampleIntervalMs: z.number().int().min(100).default(1000).describe('How often the process is sampled (≥ 100: shorter intervals can see no event-loop samples, which under-pressure treats as overload).'),
        retryAfterSeconds: z.number().int().positive().default(10).describe('Retry-After on a shed (503) answer.'),
      })
      .default({ enabled: true, maxEventLoopDelayMs: 1000, sampleIntervalMs: 1000, retryAfterSeconds: 10 })
      .describe('@fastify/under-pressure: upstream routes answer 503 + Retry-After while the process is overloaded (health routes never shed). For two sample intervals after the listener opens, event-loop delay and utilisation do not shed (they measured the start); heap and RSS do.'),
  })
  .describe('The gateway listener.');

export const auditSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('One JSON line per policy decision, per refused authentication and per other request to an upstream route refused without a decision (shed, malformed, the policy unable to decide; see docs/operations.md).'),
    destination: z.enum(['stdout', 'file']).default('stdout'),
    file: z.string().min(1).optional().describe('With destination "file": the file appended to (relative to the config file; missing directories are created). check-config reports one that cannot be written.'),
    sampleRate: z.number().min(0).max(1).default(1).describe('Fraction of allowed decisions logged; denials and errors are always logged.'),
    hashQueries: z.boolean().default(false).describe('Log sha256 hashes of the original and rewritten queries instead of their text.'),
    redact: z.array(z.string().regex(/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/, 'a dotted field path such as "input.subject.username"')).default([]).describe('Dotted record paths removed from every line (listed in its "erased" field).'),
    flushIntervalMs: z.number().int().min(0).max(10_000).default(200).describe('Lines are gathered for up to this long (or 64 KiB) and written together; 0 writes every line at once. Pending lines are written on shutdown, reload and exit; only a hard kill loses them.'),
  })
  .refine((a) => a.destination !== 'file' || a.file !== undefined, { message: 'destination "file" needs audit.file' })
  .describe('The decision (audit) log.');

/** A secret given in the config itself (prefer the *File variant or ${ENV_VAR} interpolation over a literal). */
const secretString = z
  .string()
  .min(1)
  .refine((v) => !/[\r\n\0]/.test(v), 'must not contain CR, LF or NUL');
/** A secret sent as it is in a header (a basic password is not: it goes base64-encoded, as UTF-8). */
const headerSecretString = z.string().min(1).refine(sendableInHeader, UNSENDABLE_IN_HEADER);
const exactlyOne = (a: unknown, b: unknown) => (a === undefined) !== (b === undefined);

export const upstreamAuthSchema = z
  .discriminatedUnion('type', [
    z
      .strictObject({
        type: z.literal('basic'),
        username: z.string().min(1).regex(/^[^:\r\n\0]+$/, 'must not contain ":", CR, LF or NUL').describe('Basic-auth user name (e.g. the Grafana Cloud / Mimir tenant id).'),
        password: secretString.optional().describe('Password; prefer passwordFile or ${ENV_VAR} interpolation over a literal.'),
        passwordFile: z.string().min(1).optional().describe('File holding the password (relative to the config file; read at load, trailing newline removed).'),
      })
      .refine((a) => exactlyOne(a.password, a.passwordFile), { message: 'set exactly one of password or passwordFile' }),
    z
      .strictObject({
        type: z.literal('bearer'),
        token: headerSecretString.optional().describe('Bearer token; prefer tokenFile or ${ENV_VAR} interpolation over a literal. Sent as it is: no control character but tab, nothing beyond Latin-1 (as for tokenFile).'),
        tokenFile: z.string().min(1).optional().describe('File holding the token (relative to the config file; read at load, trailing newline removed).'),
      })
      .refine((a) => exactlyOne(a.token, a.tokenFile), { message: 'set exactly one of token or tokenFile' }),
    z
      .strictObject({
        type: z.literal('sigv4'),
        region: z.string().regex(/^[a-z0-9-]+$/, 'an AWS region such as "eu-west-1"').describe('AWS region of the endpoint (e.g. "eu-west-1").'),
        service: z.string().regex(/^[a-z0-9-]+$/, 'an AWS service signing name such as "aps"').default('aps').describe('Service signing name: "aps" for Amazon Managed Service for Prometheus.'),
        accessKeyId: z.string().min(1).refine(sendableInHeader, UNSENDABLE_IN_HEADER).optional().describe('Access key id. With secretAccessKey; when both are unset, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN are read from the environment at load.'),
        secretAccessKey: secretString.optional().describe('Secret access key (use ${ENV_VAR} interpolation, not a literal).'),
        sessionToken: headerSecretString.optional().describe('Session token of temporary credentials (needs accessKeyId and secretAccessKey).'),
      })
      .refine((a) => (a.accessKeyId === undefined) === (a.secretAccessKey === undefined), {
        message: 'set both accessKeyId and secretAccessKey, or neither (then they are read from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)',
      })
      .refine((a) => a.sessionToken === undefined || a.accessKeyId !== undefined, { message: 'sessionToken needs accessKeyId and secretAccessKey' }),
  ])
  .describe(
    'Credentials the gateway presents to this upstream (the client\'s Authorization is never forwarded with them). "basic" / "bearer": an Authorization header; "sigv4": each request is signed with AWS Signature Version 4 after rewriting (Amazon Managed Service for Prometheus, other AWS-signed endpoints). Secrets are read at load; changing them needs a restart.',
  );

export const upstreamTlsSchema = z
  .strictObject({
    caFile: z.string().min(1).optional().describe('PEM file of the CA(s) that sign the upstream\'s certificate (relative to the config file); replaces the system trust store for this upstream (Prometheus: tls_config.ca_file).'),
    certFile: z.string().min(1).optional().describe('PEM client certificate (chain) presented to the upstream for mutual TLS (relative to the config file). With keyFile.'),
    keyFile: z.string().min(1).optional().describe('Unencrypted PEM private key of certFile (relative to the config file).'),
    serverName: z
      .string()
      .regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, 'a DNS name')
      .optional()
      .describe('Name sent as SNI and checked against the upstream\'s certificate instead of the URL\'s host (e.g. when the URL uses an IP address).'),
    insecureSkipVerify: z.boolean().default(false).describe('Do not verify the upstream\'s certificate (a warning is logged at start). Never in production.'),
  })
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'set both certFile and keyFile, or neither' })
  .describe('TLS towards an https upstream: a private CA, a client certificate (mTLS), the verification name. Files are read at load; a change needs a restart.');

const AUTH_HEADERS: Record<string, readonly string[]> = {
  basic: ['authorization'],
  bearer: ['authorization'],
  sigv4: ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'],
};

/**
 * An http(s) URL without userinfo (`user:password@`): fetch refuses such URLs
 * and its error quotes them whole, so the password would reach the logs; the
 * credentials belong in the auth settings. The message never repeats the URL.
 */
function credentialFreeUrl(instead = 'configure credentials in the auth settings') {
  return z.url({ protocol: /^https?$/ }).refine(
    (u) => {
      try {
        const url = new URL(u);
        return url.username === '' && url.password === '';
      } catch {
        return true; // z.url() reports it
      }
    },
    { message: `must not contain credentials (user:password@); ${instead}` },
  );
}

export const upstreamSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'lower-case letters, digits, "-" and "_"').describe('Name used in decisions (request.upstream) and logs.'),
    kind: z.enum(['prometheus', 'loki', 'tempo']).describe('Backend kind; selects the route table and query language.'),
    url: credentialFreeUrl('use upstreams[].auth')
      // Only the origin and path are used: a query (a credential, a tenant) would be dropped without a word.
      .refine((u) => !/[?#]/.test(u), { message: 'must not contain a query or fragment (only the origin and path are used; credentials go in upstreams[].auth, tenants come from the policy)' })
      .describe('Base URL of the backend, may include a path prefix (e.g. Mimir\'s /prometheus).'),
    mount: z
      .string()
      .regex(/^\/([a-zA-Z0-9._-]+(\/[a-zA-Z0-9._-]+)*)?$/, 'an absolute path such as "/prometheus" (or "/")')
      .optional()
      .describe('Gateway path prefix for this upstream; default "/<name>".'),
    timeoutMs: z.number().int().positive().default(60_000).describe('Upstream response timeout.'),
    version: z
      .string()
      .regex(/^v?\d{1,4}\.\d{1,4}(\.\d{1,6})?([-+][0-9A-Za-z.-]*)?$/, 'a release version such as "3.4.2"')
      .optional()
      .describe('The backend release (e.g. "3.4.2"), for endpoints older releases answer for the whole tenant (Loki labels and label values before 3.0, detected_labels before 3.2). Default: read from its buildinfo every few minutes; set it for builds whose version is not a release (weekly k123-…, main-…).'),
    forwardAuthorization: z.boolean().default(false).describe('Forward the client\'s Authorization header upstream (off: the gateway owns credentials). Not with auth.'),
    headers: headerMap.default({}).describe('Extra headers sent upstream (e.g. a tenant id); a value may hold no control character but tab and nothing beyond Latin-1 (checked at load, after ${ENV_VAR} interpolation). Credentials belong in auth: a header auth sets (Authorization, X-Amz-*) may not also be set here.'),
    dropHeaders: z
      .array(headerName)
      .max(256)
      .default([])
      .describe(
        "Client headers never forwarded to this upstream, besides those the gateway always drops (docs/policies.md): e.g. X-Forwarded-User or X-WEBAUTH-USER where the backend sits behind an auth proxy that trusts them. Case-insensitive; '_' and '-' are the same.",
      ),
    auth: upstreamAuthSchema.optional(),
    tls: upstreamTlsSchema.optional(),
    maxConcurrent: z.number().int().positive().optional().describe('Most requests in flight to this upstream; more → 503 + Retry-After. Unset: no limit.'),
    maxConcurrentPerSubject: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Most requests in flight to this upstream for one subject (issuer, kind of credential and sub, as server.tail.maxPerSubject counts them), so one user cannot hold every maxConcurrent slot; more → 503 + Retry-After. A request asked once per policy group counts each part, up to this limit. Unset: no per-subject limit.',
      ),
    policyEnforcement: z
      .enum(['rewrite', 'header'])
      .default('rewrite')
      .describe(
        'How the policy reaches the backend. "rewrite": the gateway rewrites every query (all kinds). "header" (Loki only): queries are forwarded as sent (still parsed and checked) and the policy goes in X-Prom-Label-Policy, one entry per tenant of the decision\'s X-Scope-OrgID, for Loki ≥ 3.7 with its label-based access control enabled; a Loki without it would answer unenforced. Exact for every DNF policy on the endpoints Loki enforces (queries, tail, label values); label names, series, index stats, volume, patterns and detected_* are rewritten as in "rewrite" mode, since Loki does not enforce the header there (volume: only under a single alternative, and not for aggregateBy=labels).',
      ),
    refuseTraceLevelIntrinsics: z
      .boolean()
      .default(false)
      .describe(
        'Tempo only. Refuse (400) restricted subjects\' TraceQL that reads a trace-level intrinsic (trace:rootService, trace:rootName, trace:duration, trace:id, and the older rootServiceName, rootName, traceDuration) or one computed from the whole trace\'s structure (span:childCount, childCount, nestedSetLeft, nestedSetRight, nestedSetParent), in any q and as the tag of a tag-values lookup, TraceQL metrics\' compare() (Tempo answers it with every attribute of the observed spans, these included), and search\'s minDuration/maxDuration: they describe the whole trace, other teams\' spans included (which service started it, how long it ran, how many spans sit under a span). Search results then also lose the root span\'s service and name, and their start and duration are those of the matched spans shown, not of the whole trace; v2 trace-by-id answers lose their status and message (PARTIAL: the whole trace exceeds Tempo\'s size limit). Off: they are answered and relayed (documented residual).',
      ),
  })
  .superRefine((u, ctx) => {
    if (u.refuseTraceLevelIntrinsics && u.kind !== 'tempo') {
      ctx.addIssue({ code: 'custom', path: ['refuseTraceLevelIntrinsics'], message: 'refuseTraceLevelIntrinsics is for Tempo upstreams (TraceQL)' });
    }
    if (u.policyEnforcement === 'header' && u.kind !== 'loki') {
      ctx.addIssue({ code: 'custom', path: ['policyEnforcement'], message: 'policyEnforcement "header" is for Loki upstreams (X-Prom-Label-Policy)' });
    }
    if (u.tls !== undefined && !u.url.startsWith('https:')) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls needs an https url' });
    if (u.auth === undefined) return;
    if (u.forwardAuthorization) {
      ctx.addIssue({ code: 'custom', path: ['forwardAuthorization'], message: 'forwardAuthorization cannot be combined with auth (which credential would the upstream see?)' });
    }
    const owned = AUTH_HEADERS[u.auth.type] ?? [];
    for (const name of Object.keys(u.headers)) {
      if (owned.includes(headerKey(name))) ctx.addIssue({ code: 'custom', path: ['headers', name], message: `header "${name}" is set by auth (type ${u.auth.type}): set it in one place only` });
    }
  })
  .describe('A backend behind the gateway.');

export const claimsSchema = z
  .strictObject({
    subject: z.string().default('sub'),
    username: z.string().default('preferred_username'),
    email: z.string().default('email'),
    groups: z.string().default('groups').describe('Dotted claim path; an array of strings, an array of objects (each named by its name, value or id), or one string, which is one group (only a scope or scp claim is split on spaces).'),
    roles: z.string().default('roles'),
    trustUsername: z
      .boolean()
      .default(false)
      .describe(
        'The username claim is unique and its holder cannot choose or change it in this provider (e.g. Keycloak without "edit username"), so team and admin `users` entries may match it. Default: they match the subject id only (OIDC Core §5.1: preferred_username is not a stable identifier).',
      ),
  })
  .describe('Where to find identity attributes in verified claims (dotted paths).');

/** Grafana's ID token names the login "username", not OIDC's preferred_username: the default also when a claims block leaves it out. */
const grafanaClaimsSchema = claimsSchema.extend({ username: z.string().default('username') });

const algorithmsSchema = z
  .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
  .min(1)
  .describe('Accepted signature algorithms (asymmetric only; "none" and HMAC are never accepted).');
const audienceSchema = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);
const typSchema = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .optional()
  .describe('Accepted JOSE "typ" header value(s), compared as RFC 7515 says (case-insensitive, "application/" optional); e.g. "at+jwt" for RFC 9068 access tokens, so that ID tokens for the same audience are refused. Default: any typ.');
const authorizedPartiesSchema = z
  .array(z.string().min(1))
  .min(1)
  .optional()
  .describe(
    'Accepted authorized parties: the client ids a token may have been issued to. The token\'s "azp" must be one of them; a token without "azp" is judged by its audience when it has exactly one (OIDC Core §2: azp may be left out when the authorized party is the sole audience) and refused when it has several. Default: any authorized party.',
  );
const httpUrl = credentialFreeUrl();

/**
 * Per provider: what it yields is put in a namespace of its own (Kubernetes'
 * --oidc-groups-prefix / --oidc-username-prefix). Applied by the Authenticator
 * to every subject the provider accepts (src/identity/prefix.ts).
 */
const namePrefix = z
  .string()
  .min(1)
  .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), 'must not contain control characters');
const prefixFields = {
  groupsPrefix: namePrefix
    .optional()
    .describe(
      'Prepended to every group this provider yields (from tokens, introspection and userinfo answers, static apikey/basic subjects, mTLS OUs and mapping), e.g. "partner:": team and admin `groups` entries then name "partner:team-a". With several providers, keeps one (a less-trusted issuer) from granting itself another\'s groups (docs/identity.md#several-identity-providers-prefixes). Reserves its namespace: another provider\'s groups that would start with it (an unprefixed provider\'s "partner:ci") are dropped. Not applied to roles, nor to the raw claims custom policies and claimsMode read. Unset: groups as they come.',
    ),
  usersPrefix: namePrefix
    .optional()
    .describe(
      'Prepended to the subject id (`sub`) and the username this provider yields: what team and admin `users` entries match, which then name e.g. "partner:u-1". Reserves its namespace: another provider\'s subject whose `sub` would start with it is refused (401), a username there dropped. Email, roles, issuer and the raw claims are left as they are. Unset: as they come.',
    ),
};

export const jwtProviderSchema = z
  .strictObject({
    type: z.literal('jwt'),
    jwksUrl: httpUrl.optional().describe('JWKS endpoint.'),
    jwksFile: z.string().optional().describe('Local JWKS JSON file (relative to the config file).'),
    issuer: z.string().min(1).describe('Required "iss".'),
    audience: audienceSchema.describe('Accepted "aud" value(s).'),
    algorithms: algorithmsSchema.default(['RS256', 'ES256']),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
    maxTokenBytes: z.number().int().positive().default(16 * 1024).describe('Longer bearer tokens are rejected unverified (only their "iss" is read: one naming this issuer is not passed on to later sources).'),
    typ: typSchema,
    authorizedParties: authorizedPartiesSchema,
    claims: claimsSchema.default(claimsSchema.parse({})),
    ...prefixFields,
  })
  .refine((p) => (p.jwksUrl === undefined) !== (p.jwksFile === undefined), { message: 'set exactly one of jwksUrl or jwksFile' });

export const userinfoSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    cacheTtlSeconds: z.number().int().positive().default(300).describe('Per-token cache of userinfo claims (never past the token\'s exp).'),
    cacheSize: z.number().int().positive().default(10_000),
    negativeCacheTtlSeconds: z
      .number()
      .int()
      .min(0)
      .default(10)
      .describe('Tokens the provider refuses (401, a 403 with a Bearer challenge or OAuth error, a "sub" other than the token\'s) are refused without another call this long (0: not cached). Provider failures (5xx, a bare 403, network) are never cached.'),
    negativeCacheSize: z.number().int().positive().default(1_000),
  })
  .describe('Enrich verified claims with the OIDC userinfo response (e.g. groups only available there). Token claims win over userinfo claims.');

export const jwksCacheSchema = z
  .strictObject({
    cooldownSeconds: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe('An unknown kid refetches the JWKS at most once per cooldown, and a failed fetch is not retried before it ends (the held keys verify meanwhile). At least 1: with none, every forged token would be a fetch.'),
    maxAgeSeconds: z.number().int().positive().default(600).describe('Refetch the JWKS after this long even without an unknown kid.'),
  })
  .describe('Remote JWKS caching.');

export const oidcProviderSchema = z
  .strictObject({
    type: z.literal('oidc'),
    issuer: httpUrl.describe('Issuer URL; discovery reads <issuer>/.well-known/openid-configuration and must echo it exactly.'),
    audience: audienceSchema.describe('Accepted "aud" value(s) of JWT access tokens.'),
    algorithms: algorithmsSchema.default(['RS256', 'ES256']),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
    maxTokenBytes: z.number().int().positive().default(16 * 1024).describe('Longer bearer tokens are rejected unverified (only their "iss" is read: one naming this issuer is not passed on to later sources).'),
    jwksUrl: httpUrl.optional().describe('Override the discovered jwks_uri. Needed when an https issuer announces a jwks_uri that is not https: that one is refused (503).'),
    typ: typSchema,
    authorizedParties: authorizedPartiesSchema,
    jwks: jwksCacheSchema.default(jwksCacheSchema.parse({})),
    timeoutMs: z.number().int().positive().default(5_000).describe('Timeout for discovery, JWKS and userinfo requests.'),
    discoveryRetrySeconds: z.number().int().positive().default(10).describe('After a failed discovery, requests answer 503 and discovery is retried at most this often.'),
    userinfo: userinfoSchema.optional(),
    claims: claimsSchema.default(claimsSchema.parse({})),
    ...prefixFields,
  })
  .describe('JWT access tokens verified against keys found by OIDC discovery.');

const SCRYPT_HASH = String.raw`scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]{16,}\$[A-Za-z0-9_-]{32,}`;
const secretHash = z
  .string()
  .regex(new RegExp(`^${SCRYPT_HASH}$`), 'expected an scrypt hash "scrypt$N$r$p$salt$hash" (see docs/identity.md); plain-text secrets are not accepted');
/** An API key's hash: scrypt, or SHA-256 for generated (random, 256-bit) keys, which need no slow hash. */
const apiKeyHash = z
  .string()
  .regex(
    new RegExp(`^(?:${SCRYPT_HASH}|sha256\\$[0-9a-f]{64})$`),
    'expected "sha256$<hex>" (generated keys) or an scrypt hash "scrypt$N$r$p$salt$hash" (see docs/identity.md); plain-text secrets are not accepted',
  );

const staticSubjectSchema = z
  .strictObject({
    sub: z.string().min(1).optional().describe('Subject id; default: the key name / username.'),
    username: z.string().min(1).optional(),
    email: z.string().min(1).optional(),
    groups: z.array(z.string().min(1)).default([]),
    roles: z.array(z.string().min(1)).default([]),
  })
  .describe('The subject a static credential authenticates as.');

export const introspectionProviderSchema = z
  .strictObject({
    type: z.literal('introspection'),
    issuer: httpUrl.optional().describe('Issuer URL for discovery of introspection_endpoint (and userinfo_endpoint); also required to match the response "iss" if present.'),
    introspectionUrl: httpUrl.optional().describe('RFC 7662 endpoint; overrides discovery.'),
    clientId: z.string().min(1),
    clientSecret: z.string().min(1).optional().describe('Client secret; use ${ENV_VAR} interpolation or clientSecretFile, never a literal.'),
    clientSecretFile: z.string().optional().describe('File holding the client secret (relative to the config file).'),
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
    audience: audienceSchema.optional().describe('If set, the response "aud" must contain one of these.'),
    authorizedParties: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Accepted authorized parties: the client ids a token may have been issued to. The response "client_id" (RFC 7662) must be one of them; an active token without "client_id" is refused. Default: any client.'),
    tokens: z.enum(['opaque', 'all']).default('opaque').describe('"opaque": JWT-shaped bearer tokens are left to other sources. "all": JWT-shaped ones too, but for one whose "iss" is a jwt/oidc source\'s issuer (that source\'s refusal is final: docs/identity.md).'),
    cacheTtlSeconds: z.number().int().positive().default(60).describe('Active results are cached this long, never past "exp".'),
    cacheSize: z.number().int().positive().default(10_000),
    negativeCacheTtlSeconds: z.number().int().min(0).default(10).describe('"active: false" results are cached this long (0: not at all).'),
    negativeCacheSize: z.number().int().positive().default(1_000),
    timeoutMs: z.number().int().positive().default(5_000),
    maxTokenBytes: z.number().int().positive().default(16 * 1024),
    discoveryRetrySeconds: z.number().int().positive().default(10),
    userinfo: userinfoSchema.optional(),
    claims: claimsSchema.default(claimsSchema.parse({})),
    ...prefixFields,
  })
  .refine((p) => p.issuer !== undefined || p.introspectionUrl !== undefined, { message: 'set issuer (discovery) or introspectionUrl' })
  .refine((p) => (p.clientSecret === undefined) !== (p.clientSecretFile === undefined), { message: 'set exactly one of clientSecret or clientSecretFile' })
  .refine((p) => p.userinfo === undefined || p.issuer !== undefined, { message: 'userinfo needs issuer (discovery)' })
  .describe('Opaque tokens checked with RFC 7662 token introspection.');

export const grafanaProviderSchema = z
  .strictObject({
    type: z.literal('grafana'),
    url: httpUrl.describe('Grafana\'s root URL: the ID token\'s "iss".'),
    jwksUrl: httpUrl.optional().describe('Default: <url>/api/signing-keys/keys.'),
    orgs: z.array(z.number().int().positive()).min(1).default([1]).describe('Accepted Grafana org ids (audience "org:<id>").'),
    header: headerName.default('X-Grafana-Id').describe('Header carrying the ID token.'),
    algorithms: algorithmsSchema.default(['ES256']),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
    maxTokenBytes: z.number().int().positive().default(16 * 1024),
    authorizedParties: authorizedPartiesSchema,
    jwks: jwksCacheSchema.default(jwksCacheSchema.parse({})),
    timeoutMs: z.number().int().positive().default(5_000),
    claims: grafanaClaimsSchema
      .default(grafanaClaimsSchema.parse({}))
      .describe('Where to find identity attributes in the ID token (dotted paths); username is Grafana\'s "username" claim unless set.'),
    ...prefixFields,
  })
  .describe('Grafana\'s signed ID token (X-Grafana-Id); subject.grafanaOrg is the org id from "aud".');

export const apiKeyProviderSchema = z
  .strictObject({
    type: z.literal('apikey'),
    header: headerName.optional().describe('Header carrying the key (e.g. X-API-Key); default: Authorization: Bearer <key>.'),
    keys: z
      .array(
        z.strictObject({
          name: z.string().min(1),
          hash: apiKeyHash.describe('sha256$<hex> for a generated key (lbac_ and 43 base64url characters; one lookup per request; a key of another shape never matches a sha256 hash), or scrypt$… for a key a person chose (one scrypt per configured scrypt key for every unknown key: see docs/identity.md).'),
          subject: staticSubjectSchema.default(staticSubjectSchema.parse({})),
        }),
      )
      .min(1),
    cacheTtlSeconds: z.number().int().min(0).default(60).describe('Verified keys are cached (by digest) this long.'),
    ...prefixFields,
  })
  .superRefine((p, ctx) => {
    const names = new Set<string>();
    const hashes = new Set<string>();
    p.keys.forEach((k, i) => {
      if (names.has(k.name)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'name'], message: `duplicate key name "${k.name}"` });
      // One generated key under two names would be either subject (a digest lookup keeps the last).
      if (k.hash.startsWith('sha256$') && hashes.has(k.hash)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'hash'], message: `key "${k.name}" has the hash of an earlier key` });
      names.add(k.name);
      hashes.add(k.hash);
    });
  })
  .describe('Static API keys, stored as SHA-256 digests (generated keys) or scrypt hashes.');

export const basicProviderSchema = z
  .strictObject({
    type: z.literal('basic'),
    users: z
      .array(z.strictObject({ username: z.string().min(1).regex(/^[^:]+$/, 'must not contain ":"'), hash: secretHash, subject: staticSubjectSchema.default(staticSubjectSchema.parse({})) }))
      .min(1),
    cacheTtlSeconds: z.number().int().min(0).default(60).describe('Verified credentials are cached (by digest) this long.'),
    ...prefixFields,
  })
  .superRefine((p, ctx) => {
    const names = new Set<string>();
    p.users.forEach((u, i) => {
      if (names.has(u.username)) ctx.addIssue({ code: 'custom', path: ['users', i, 'username'], message: `duplicate username "${u.username}"` });
      names.add(u.username);
    });
  })
  .describe('HTTP basic-auth users, passwords stored as scrypt hashes.');

const certField = z.enum(['cn', 'dns', 'uri', 'email']);
export const mtlsProviderSchema = z
  .strictObject({
    type: z.literal('mtls'),
    subjectFrom: z
      .array(certField)
      .min(1)
      .default(['cn'])
      .describe('Certificate fields tried in order for "sub": subject CN, first SAN DNS name, URI (e.g. SPIFFE id) or email. A later field whose value looks like an earlier one (a CN "spiffe://…" after uri, "a@b" after email, "a.b" after dns) is refused (401).'),
    usernameFrom: z.array(certField).min(1).optional().describe('Fields tried in order for "username"; default: subjectFrom.'),
    ouAsGroups: z
      .boolean()
      .optional()
      .describe(
        'The subject\'s OU values become groups. Only for a client CA that never copies a requested OU into a certificate: otherwise the holder chooses its groups. Default: false (it was true before; left unset, check-config and the start-up log warn).',
      ),
    mapping: z
      .array(
        z.strictObject({
          subject: z.string().min(1).describe('The certificate\'s "sub" (per subjectFrom).'),
          groups: z.array(z.string().min(1)).default([]),
          roles: z.array(z.string().min(1)).default([]),
        }),
      )
      .default([])
      .describe('Extra groups/roles per certificate subject.'),
    requireMapping: z.boolean().default(false).describe('Refuse (401) verified certificates whose subject has no mapping entry.'),
    ...prefixFields,
  })
  .describe('Client certificates verified against server.tls.clientCA (needs server.tls).');

export const providerSchema = z.discriminatedUnion('type', [
  jwtProviderSchema,
  oidcProviderSchema,
  introspectionProviderSchema,
  grafanaProviderSchema,
  apiKeyProviderSchema,
  basicProviderSchema,
  mtlsProviderSchema,
]);

export const identitySchema = z
  .strictObject({
    providers: z.array(providerSchema).min(1).describe('Identity sources, tried in order, except that introspection sources (which send the credential to the provider) come after all the others (see docs/identity.md).'),
  })
  .describe('How requests are authenticated.');

/** A selector value in the compact team syntax: "v" (=), "!v" (!=), "~re" (=~), "!~re" (!~), "*" (any); a list ORs values. */
// YAML reads unquoted 01, 1e3, true or null as other types: say so rather than "Invalid input".
const QUOTE_IT = { error: 'expected a string or a list of strings: quote values YAML reads as numbers, booleans or null (e.g. "01", "true")' };
const selectorValue = z.union([z.string(), z.array(z.string(QUOTE_IT)).min(1)], QUOTE_IT);
export const teamSchema = z
  .strictObject({
    groups: z.array(z.string().min(1)).default([]).describe('Group names as subjects carry them: with their provider\'s groupsPrefix, when it sets one ("partner:team-a").'),
    users: z
      .array(z.string().min(1))
      .default([])
      .describe('Subject ids (`sub`); usernames only from sources that vouch for them (static credentials, client certificates, `claims.trustUsername`). With their provider\'s usersPrefix, when it sets one ("partner:u-1").'),
    upstreams: z.array(z.string().min(1)).default(['*']).describe('Upstream names this team applies to; "*" = all.'),
    selectors: z.array(z.record(z.string().min(1), selectorValue)).default([]).describe('Alternatives (OR); each maps label → value (AND).'),
    headers: policyHeaderMap.default({}).describe('Tenant headers (e.g. X-Scope-OrgID); several teams join values with "|".'),
    labels: z.array(z.string().min(1)).default(['*']).describe('Label-name allowlist for label-name endpoints (passed to the policy as data; response filtering by it is not applied yet).'),
  })
  .describe('A team: who belongs to it and what it may see.');

export const adminsSchema = z
  .strictObject({
    groups: z.array(z.string().min(1)).default([]).describe('As `teams.<name>.groups` (with the provider\'s groupsPrefix).'),
    users: z.array(z.string().min(1)).default([]).describe('As `teams.<name>.users` (`sub`, a trusted username; with the provider\'s usersPrefix).'),
    headers: policyHeaderMap.default({}),
  })
  .describe('Subjects that see everything (no rewriting), still with these headers.');

const bundleKeySchema = z
  .strictObject({
    keyid: z.string().min(1).describe('Key id: matched against the signature\'s "kid" header (opa build --signing-key … sets "default" unless the claims file names one) or the payload "keyid".'),
    algorithm: z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512']).default('RS256').describe('opa build --signing-alg.'),
    publicKey: z.string().min(1).optional().describe('PEM public key ("-----BEGIN PUBLIC KEY-----").'),
    publicKeyFile: z.string().min(1).optional().describe('File holding the PEM public key (relative to the config file).'),
    scope: z.string().min(1).optional().describe('Required signature "scope" when this key verifies (unless bundle.signing.scope is set).'),
  })
  .refine((k) => (k.publicKey === undefined) !== (k.publicKeyFile === undefined), { message: 'set exactly one of publicKey or publicKeyFile' })
  .describe('A bundle verification key.');

export const bundleSchema = z
  .strictObject({
    url: credentialFreeUrl('use policy.bundle.auth').describe(
      "Bundle service base URL (OPA: services.<name>.url). Up to 5 redirects are followed; the credential (`auth`) is only sent to this URL's origin, and from an `https` URL (or once a redirect reached `https`) a redirect to anything but `https` is refused (the download fails, the active policy stays).",
    ),
    resource: z.string().min(1).default('bundles/bundle.tar.gz').describe('Path of the bundle under url (OPA: bundles.<name>.resource); fetched as <url>/<resource>.'),
    auth: z
      .strictObject({
        type: z.enum(['none', 'bearer']).default('none'),
        token: z
          .string()
          .trim()
          .pipe(secretString)
          .optional()
          .describe('Bearer token (surrounding whitespace removed, e.g. the newline of a ${ENV_VAR} from a file); use ${ENV_VAR} interpolation or tokenFile, not a literal.'),
        tokenFile: z.string().min(1).optional().describe('File holding the bearer token (relative to the config file; re-read on every request, so rotation needs no restart; a regular file of one line).'),
        scheme: z.string().regex(HEADER_NAME).default('Bearer').describe('Authorization scheme.'),
      })
      .refine((a) => a.type === 'none' || (a.token === undefined) !== (a.tokenFile === undefined), { message: 'bearer auth needs exactly one of token or tokenFile' })
      .default({ type: 'none', scheme: 'Bearer' })
      .describe('How the gateway authenticates to the bundle service.'),
    polling: z
      .strictObject({
        minDelaySeconds: z.number().positive().default(60).describe('Shortest wait between two downloads (fractions allowed).'),
        maxDelaySeconds: z.number().positive().default(120).describe('Longest wait between two downloads; also the cap of the error backoff.'),
        longPollingTimeoutSeconds: z
          .number()
          .int()
          .positive()
          .optional()
          .describe(
            'Enable HTTP long polling (OPA: polling.long_polling_timeout_seconds): once the service answers with Content-Type application/vnd.openpolicyagent.bundles and an ETag, conditional requests carry "Prefer: modes=snapshot;wait=<this>" and the next request follows each answer at once (after a 304 within half a second: the polling delay); a service answering otherwise is polled with the delays above. Unset: plain polling.',
          ),
      })
      .refine((p) => p.minDelaySeconds <= p.maxDelaySeconds, { message: 'minDelaySeconds must not exceed maxDelaySeconds' })
      .default({ minDelaySeconds: 60, maxDelaySeconds: 120 })
      .describe('Each wait is uniformly random in [min, max] (jitter). After a failure the wait is an exponential backoff from min(1 s, min) doubling per consecutive failure, capped at max, with jitter.'),
    timeoutMs: z.number().int().positive().default(30_000).describe('Timeout for one download (headers and body).'),
    maxSizeBytes: z.number().int().positive().default(64 * 1024 * 1024).describe('Largest accepted bundle, compressed and uncompressed; also bounds the persisted bundle read at start.'),
    signing: z
      .strictObject({
        keys: z.array(bundleKeySchema).min(1),
        keyid: z.string().min(1).optional().describe('Always verify with this key (OPA: bundles.<name>.signing.keyid); default: the key the signature names.'),
        scope: z.string().min(1).optional().describe('Required signature scope (opa build --scope / claims file). Unset: the signature must name no scope, as in OPA.'),
        excludeFiles: z.array(z.string().min(1)).default([]).describe('Bundle files not covered by the signature (OPA: exclude_files).'),
      })
      .optional()
      .describe('Verify .signatures.json (opa build --signing-key); unsigned, tampered or foreign-key bundles are rejected. Unset: signatures are not checked.'),
    persistDir: z.string().min(1).optional().describe('Directory where the last activated bundle is kept (relative to the config file); used at start when the service is unreachable; the persisted bundle must be a regular file within maxSizeBytes. Unset: not persisted.'),
    tls: z
      .strictObject({
        ca: z.string().min(1).optional().describe('PEM file of the CA(s) that sign the bundle service\'s certificate (relative to the config file); replaces the system trust store for this service.'),
        cert: z.string().min(1).optional().describe('PEM client certificate (chain) presented to the bundle service (relative to the config file). With key.'),
        key: z.string().min(1).optional().describe('PEM private key of cert (relative to the config file).'),
      })
      .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'set both cert and key, or neither' })
      .optional()
      .describe('TLS towards an https bundle service: a private CA and/or a client certificate (OPA: services.<name>.tls.ca_cert, credentials.client_tls). Files are read at start.'),
  })
  .refine((b) => b.tls === undefined || b.url.startsWith('https:'), { message: 'tls needs an https url', path: ['tls'] })
  .describe('Fetch the policy as an OPA bundle (opa build -t wasm -e <entrypoint>) from a bundle service, following OPA\'s bundle protocol (ETag / If-None-Match, polling). The gateway is not ready until a bundle (or the persisted one) is active.');

export const claimsModeSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    namespacesClaim: z.string().min(1).default('namespaces').describe('Claim (dotted path) listing the namespaces the token may see: ["a", "b"] or "a".'),
    labelsClaim: z.string().min(1).default('labels').describe('Claim (dotted path) with label → value(s): {app: "x", team: ["y", "z"]}; ANDed with the namespaces.'),
    namespaceLabel: z
      .string()
      .regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a label name')
      .default('namespace')
      .describe('The label the namespaces claim restricts (mapped through policy.attributes for Tempo).'),
    teamsFallback: z.boolean().default(false).describe('Tokens carrying neither claim (and, with issuers, subjects of an issuer not listed) are decided by the teams (false: refused, 403).'),
    issuers: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'Only the claims of these token issuers count: a jwt, oidc, introspection or grafana subject whose issuer (the token\'s verified "iss"; for introspection the answer\'s "iss", else the provider\'s issuer) is listed, trailing "/" ignored. Any other subject (another issuer, apikey, basic, mtls) is read as carrying no claims: refused (403), or decided by the teams alone with teamsFallback. Unset: every issuer\'s claims count (check-config warns when there are several).',
      ),
  })
  .describe('Claims-driven mode of the default policy: the token\'s own claims are the allowed selectors (values are literals); admins stay unrestricted. See docs/identity.md.');

export const policySchema = z
  .strictObject({
    wasm: z.string().optional().describe('Compiled policy: the policy.wasm inside the bundle that opa build -t wasm -e lbac/decision writes (tar -xzf bundle.tar.gz /policy.wasm); default: the bundled wasm/policy.wasm. Not with bundle.'),
    entrypoint: z.string().default('lbac/decision'),
    attributes: z
      .partialRecord(z.enum(['prometheus', 'loki', 'tempo']), z.record(z.string(), z.string()))
      .default({})
      // Per kind: mapping another kind keeps Tempo's default (without it, Tempo selectors would name a bare `namespace`).
      .transform((a) => ({ tempo: { namespace: 'resource.k8s.namespace.name' }, ...a }))
      .describe('Per backend kind, label name → backend attribute name (Tempo attributes). Default for tempo: {namespace: resource.k8s.namespace.name}, kept unless tempo is set.'),
    bundle: bundleSchema.optional(),
    claimsMode: claimsModeSchema.optional(),
  })
  .refine((p) => p.wasm === undefined || p.bundle === undefined, { message: 'set either policy.wasm or policy.bundle, not both' })
  .describe('Which policy decides.');

export const configSchema = z
  .strictObject({
    server: serverSchema.default(serverSchema.parse({})),
    upstreams: z.array(upstreamSchema).min(1),
    identity: identitySchema,
    policy: policySchema.default(policySchema.parse({})),
    admins: adminsSchema.default(adminsSchema.parse({})),
    teams: z.record(z.string().min(1), teamSchema).default({}),
    audit: auditSchema.default(auditSchema.parse({})),
    janus: z.record(z.string(), z.unknown()).optional().describe('Teams in the Janus ConfigMap format (admin, <service>.user-label-constraints, tenant-header-constraints).'),
  })
  .superRefine((c, ctx) => {
    c.identity.providers.forEach((p, i) => {
      if (p.type === 'mtls' && c.server.tls?.clientCA === undefined) {
        ctx.addIssue({ code: 'custom', path: ['identity', 'providers', i, 'type'], message: 'an mtls provider needs server.tls with clientCA' });
      }
    });
    const names = new Set<string>();
    const mounts = new Set<string>();
    c.upstreams.forEach((u, i) => {
      if (names.has(u.name)) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `duplicate upstream name "${u.name}"` });
      names.add(u.name);
      const mount = u.mount ?? `/${u.name}`;
      if (mounts.has(mount)) ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'mount'], message: `duplicate mount "${mount}"` });
      mounts.add(mount);
    });
  });

export type GatewayConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type JwtProviderConfig = z.output<typeof jwtProviderSchema>;
export type OidcProviderConfig = z.output<typeof oidcProviderSchema>;
export type IntrospectionProviderConfig = z.output<typeof introspectionProviderSchema>;
export type GrafanaProviderConfig = z.output<typeof grafanaProviderSchema>;
export type ApiKeyProviderConfig = z.output<typeof apiKeyProviderSchema>;
export type BasicProviderConfig = z.output<typeof basicProviderSchema>;
export type MtlsProviderConfig = z.output<typeof mtlsProviderSchema>;
export type ServerTlsConfig = z.output<typeof serverTlsSchema>;
export type ProviderConfig = z.output<typeof providerSchema>;
export type UserinfoConfig = z.output<typeof userinfoSchema>;
export type ClaimsConfig = z.output<typeof claimsSchema>;
export type TeamConfig = z.output<typeof teamSchema>;
export type BundleConfig = z.output<typeof bundleSchema>;
export type AuditConfig = z.output<typeof auditSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type ClaimsModeConfig = z.output<typeof claimsModeSchema>;
