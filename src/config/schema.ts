import { z } from 'zod';

/**
 * The configuration schema: one source of truth for validation, TypeScript
 * types and the generated reference in docs/configuration.md. Objects are strict:
 * an unknown key is an error (a typo must not silently disable a setting).
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:8080"')
  .describe('Address to listen on, "host:port".');

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid HTTP header name');
const headerValue = z.string().refine((v) => !/[\r\n\0]/.test(v), 'header values must not contain CR, LF or NUL');
const headerMap = z.record(headerName, headerValue);

export const serverSchema = z
  .strictObject({
    listen: hostPort.default('127.0.0.1:8080'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level.'),
    bodyLimitBytes: z.number().int().positive().default(1024 * 1024).describe('Largest accepted request body; larger → 413.'),
    maxQueryLength: z.number().int().positive().default(64 * 1024).describe('Longest accepted query, in bytes; longer → 400.'),
    maxQueryDepth: z.number().int().positive().default(128).describe('Deepest accepted query syntax tree; deeper → 400.'),
  })
  .describe('The gateway listener.');

export const upstreamSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'lower-case letters, digits, "-" and "_"').describe('Name used in decisions (request.upstream) and logs.'),
    kind: z.enum(['prometheus', 'loki', 'tempo']).describe('Backend kind; selects the route table and query language.'),
    url: z.url({ protocol: /^https?$/ }).describe('Base URL of the backend, may include a path prefix (e.g. Mimir\'s /prometheus).'),
    mount: z
      .string()
      .regex(/^\/([a-zA-Z0-9._-]+(\/[a-zA-Z0-9._-]+)*)?$/, 'an absolute path such as "/prometheus" (or "/")')
      .optional()
      .describe('Gateway path prefix for this upstream; default "/<name>".'),
    timeoutMs: z.number().int().positive().default(60_000).describe('Upstream response timeout.'),
    forwardAuthorization: z.boolean().default(false).describe('Forward the client\'s Authorization header upstream (off: the gateway owns credentials).'),
    headers: headerMap.default({}).describe('Extra headers sent upstream (e.g. upstream credentials).'),
  })
  .describe('A backend behind the gateway.');

export const claimsSchema = z
  .strictObject({
    subject: z.string().default('sub'),
    username: z.string().default('preferred_username'),
    email: z.string().default('email'),
    groups: z.string().default('groups').describe('Dotted claim path; arrays, space-separated strings and arrays of {name} objects are accepted.'),
    roles: z.string().default('roles'),
  })
  .describe('Where to find identity attributes in verified claims (dotted paths).');

export const jwtProviderSchema = z
  .strictObject({
    type: z.literal('jwt'),
    jwksUrl: z.url({ protocol: /^https?$/ }).optional().describe('JWKS endpoint.'),
    jwksFile: z.string().optional().describe('Local JWKS JSON file (relative to the config file).'),
    issuer: z.string().min(1).describe('Required "iss".'),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).describe('Accepted "aud" value(s).'),
    algorithms: z
      .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
      .min(1)
      .default(['RS256', 'ES256'])
      .describe('Accepted signature algorithms (asymmetric only; "none" and HMAC are never accepted).'),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
    maxTokenBytes: z.number().int().positive().default(16 * 1024).describe('Longer bearer tokens are rejected unparsed.'),
    claims: claimsSchema.default(claimsSchema.parse({})),
  })
  .refine((p) => (p.jwksUrl === undefined) !== (p.jwksFile === undefined), { message: 'set exactly one of jwksUrl or jwksFile' });

export const identitySchema = z
  .strictObject({
    providers: z.array(jwtProviderSchema).min(1).describe('Identity sources, tried in order.'),
  })
  .describe('How requests are authenticated.');

/** A selector value in the compact team syntax: "v" (=), "!v" (!=), "~re" (=~), "!~re" (!~), "*" (any); a list ORs values. */
const selectorValue = z.union([z.string(), z.array(z.string()).min(1)]);
export const teamSchema = z
  .strictObject({
    groups: z.array(z.string().min(1)).default([]),
    users: z.array(z.string().min(1)).default([]).describe('Usernames or subject ids.'),
    upstreams: z.array(z.string().min(1)).default(['*']).describe('Upstream names this team applies to; "*" = all.'),
    selectors: z.array(z.record(z.string().min(1), selectorValue)).default([]).describe('Alternatives (OR); each maps label → value (AND).'),
    headers: headerMap.default({}).describe('Tenant headers (e.g. X-Scope-OrgID); several teams join values with "|".'),
    labels: z.array(z.string().min(1)).default(['*']).describe('Label-name allowlist for label-name endpoints (passed to the policy as data; response filtering by it is not applied yet).'),
  })
  .describe('A team: who belongs to it and what it may see.');

export const adminsSchema = z
  .strictObject({
    groups: z.array(z.string().min(1)).default([]),
    users: z.array(z.string().min(1)).default([]),
    headers: headerMap.default({}),
  })
  .describe('Subjects that see everything (no rewriting), still with these headers.');

export const policySchema = z
  .strictObject({
    wasm: z.string().optional().describe('Compiled policy (opa build -t wasm -e lbac/decision); default: the bundled wasm/policy.wasm.'),
    entrypoint: z.string().default('lbac/decision'),
    attributes: z
      .partialRecord(z.enum(['prometheus', 'loki', 'tempo']), z.record(z.string(), z.string()))
      .default({ tempo: { namespace: 'resource.k8s.namespace.name' } })
      .describe('Per backend kind, label name → backend attribute name (Tempo attributes).'),
  })
  .describe('Which policy decides.');

export const configSchema = z
  .strictObject({
    server: serverSchema.default(serverSchema.parse({})),
    upstreams: z.array(upstreamSchema).min(1),
    identity: identitySchema,
    policy: policySchema.default(policySchema.parse({})),
    admins: adminsSchema.default(adminsSchema.parse({})),
    teams: z.record(z.string().min(1), teamSchema).default({}),
    janus: z.record(z.string(), z.unknown()).optional().describe('Teams in the Janus ConfigMap format (admin, <service>.user-label-constraints, tenant-header-constraints).'),
  })
  .superRefine((c, ctx) => {
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
export type ClaimsConfig = z.output<typeof claimsSchema>;
export type TeamConfig = z.output<typeof teamSchema>;
