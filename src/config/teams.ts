import { RE2JS } from 're2js';
import { DECISION_LIMITS } from '../policy/decision.ts';
import { checkMatcherRegex, type Matcher, type MatcherGroup } from '../rewrite/matcher.ts';
import { isEmptyHeaderValue, policyHeaderProblem } from '../util/header-name.ts';
import type { ClaimsModeConfig, ParsedConfig, TeamConfig } from './schema.ts';

/**
 * Turns the user's team YAML (native or Janus style) into `data.lbac`, the one
 * shape the default Rego policy reads. Pure; throws `TeamsError` with the
 * offending path so the loader can point at the YAML line.
 */

export interface PolicyTeam {
  groups: string[];
  users: string[];
  upstreams: string[];
  selectors: Matcher[][];
  headers: Record<string, string>;
  labels: string[];
}

export interface PolicyData {
  admins: { groups: string[]; users: string[]; headers: Record<string, string> };
  teams: Record<string, PolicyTeam>;
  attributes: Record<string, Record<string, string>>;
  /** Claims-driven mode (policies/lbac/claims.rego); only present when configured. */
  claimsMode?: ClaimsModeConfig;
}

export class TeamsError extends Error {
  readonly path: (string | number)[];
  constructor(message: string, path: (string | number)[]) {
    super(message);
    this.name = 'TeamsError';
    this.path = path;
  }
}

/** A regex value as the backends and value lists use it (checkMatcherRegex). */
function checkRegex(re: string, path: (string | number)[]): void {
  try {
    checkMatcherRegex(re);
  } catch (e) {
    throw new TeamsError(`invalid RE2 regular expression ${JSON.stringify(re)}: ${(e as Error).message}`, path);
  }
}

/** One compact value: "v" (=), "=v" (= literal, for values starting with ~ or !), "!v" (!=), "~re" (=~), "!~re" (!~), "*" (any). */
export function parseCompactValue(name: string, raw: string, path: (string | number)[]): Matcher {
  let m: Matcher;
  if (raw === '*') m = { name, op: '=~', value: '.*' };
  else if (raw.startsWith('!~')) m = { name, op: '!~', value: raw.slice(2) };
  else if (raw.startsWith('~')) m = { name, op: '=~', value: raw.slice(1) };
  else if (raw.startsWith('!')) m = { name, op: '!=', value: raw.slice(1) };
  else if (raw.startsWith('=')) m = { name, op: '=', value: raw.slice(1) };
  else m = { name, op: '=', value: raw };
  // "" selects series WITHOUT the label (= "", =~ "") or every series with it (!= "", !~ ""): never what an
  // empty value means in a team, which is usually an unset ${VAR}. Absence can be written as "!~.+".
  if (m.value === '') {
    throw new TeamsError(`empty value ${JSON.stringify(raw)} (an unset \${VAR}?): it would select series by the absence or presence of ${JSON.stringify(name)}; write "*" for any value, "!~.+" for series without the label`, path);
  }
  if (m.op === '=~' || m.op === '!~') checkRegex(m.value, path);
  return m;
}

/** A list of values ORs them: literals and regexes become one `=~` alternation. */
export function parseValueList(name: string, values: readonly string[], path: (string | number)[]): Matcher {
  if (values.length === 1) return parseCompactValue(name, values[0]!, [...path, 0]);
  const parts: string[] = [];
  for (const [i, v] of values.entries()) {
    const m = parseCompactValue(name, v, [...path, i]);
    if (m.op === '=') parts.push(RE2JS.quote(m.value));
    else if (m.op === '=~') parts.push(m.value === '.*' ? '.*' : `(?:${m.value})`);
    else throw new TeamsError(`negative values ("!…") cannot be combined in a list; use one alternative per value`, [...path, i]);
  }
  const value = parts.includes('.*') ? '.*' : parts.join('|');
  return { name, op: '=~', value };
}

function normaliseTeam(team: TeamConfig, path: (string | number)[]): PolicyTeam {
  const selectors: Matcher[][] = team.selectors.map((alt, i) =>
    Object.entries(alt).map(([name, v]) =>
      Array.isArray(v) ? parseValueList(name, v, [...path, 'selectors', i, name]) : parseCompactValue(name, v, [...path, 'selectors', i, name]),
    ),
  );
  selectors.forEach((g, i) => {
    if (g.length === 0) throw new TeamsError('an empty alternative would allow everything; use "*" values explicitly or admins', [...path, 'selectors', i]);
  });
  return { groups: team.groups, users: team.users, upstreams: team.upstreams, selectors, headers: team.headers, labels: team.labels };
}

// ---- Janus ConfigMap format -------------------------------------------------

const JANUS_SERVICE_KINDS: Record<string, string> = { thanos: 'prometheus', prometheus: 'prometheus', mimir: 'prometheus', loki: 'loki', tempo: 'tempo' };

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Janus headers come as a map, a list of "K: V" strings, or a list of one-key maps. */
function janusHeaders(raw: unknown, path: (string | number)[]): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (k: string, v: unknown, p: (string | number)[]) => {
    // YAML has already read an unquoted 0042 as 42 (1e3 as 1000, a long id with lost digits): that
    // would be another tenant's id. Native teams' headers refuse numbers too.
    if (typeof v === 'number') throw new TeamsError(`header value ${JSON.stringify(k.trim())} is a number (YAML reads an unquoted 0042 as 42): quote it, e.g. "0042"`, p);
    if (typeof v !== 'string') throw new TeamsError('header value must be a string', p);
    const name = k.trim();
    const value = v.trim();
    // The same rules as native teams' headers (config/schema.ts): refused at load, not on every request.
    const problem = policyHeaderProblem(name, value) ?? (isEmptyHeaderValue(value) ? `the value of ${JSON.stringify(name)} is empty` : undefined);
    if (problem !== undefined) throw new TeamsError(problem, p);
    out[name] = value;
  };
  if (raw === undefined) return out;
  if (isRecord(raw)) for (const [k, v] of Object.entries(raw)) add(k, v, [...path, k]);
  else if (Array.isArray(raw))
    raw.forEach((item, i) => {
      if (typeof item === 'string') {
        const idx = item.indexOf(':');
        if (idx <= 0) throw new TeamsError('expected "Header: value"', [...path, i]);
        add(item.slice(0, idx), item.slice(idx + 1), [...path, i]);
      } else if (isRecord(item)) for (const [k, v] of Object.entries(item)) add(k, v, [...path, i, k]);
      else throw new TeamsError('expected "Header: value" or a map', [...path, i]);
    });
  else throw new TeamsError('expected a map or a list of headers', path);
  return out;
}

/**
 * Janus wildcard values ("*order-service") are globs; "~re" stays a regex; "*"
 * alone is any value; anything else is that literal value, also when it starts
 * with "!" or "=" (Janus has no negation).
 */
function janusValue(v: string): string {
  if (v === '*' || v.startsWith('~')) return v;
  if (!v.includes('*')) return `=${v}`;
  return '~' + v.split('*').map((s) => RE2JS.quote(s)).join('.*');
}

/**
 * Janus style: `{admin: {header}, <service>: {user-label-constraints: {<user|group>: {labels: [...], <label>: [values]}}, tenant-header-constraints: {<user|group>: {header}}}}`.
 * Each user-or-group key becomes a team `janus:<service>:<key>` matching that name as a group or a user,
 * scoped to the upstreams of the service's kind (or the upstream with that name).
 */
export function teamsFromJanus(janus: Record<string, unknown>, upstreams: ParsedConfig['upstreams']): { teams: Record<string, PolicyTeam>; adminHeaders: Record<string, string> } {
  const teams: Record<string, PolicyTeam> = {};
  let adminHeaders: Record<string, string> = {};
  /** Upstream name → the Janus section that applies to it: two sections on one upstream would merge into one another. */
  const sectionOf = new Map<string, string>();
  for (const [service, body] of Object.entries(janus)) {
    const base = ['janus', service];
    if (service === 'admin') {
      if (!isRecord(body)) throw new TeamsError('expected a map', base);
      adminHeaders = janusHeaders(body['header'], [...base, 'header']);
      continue;
    }
    if (!isRecord(body)) throw new TeamsError('expected a map with user-label-constraints / tenant-header-constraints', base);
    const byName = upstreams.filter((u) => u.name === service).map((u) => u.name);
    const kind = JANUS_SERVICE_KINDS[service];
    const scoped = byName.length > 0 ? byName : upstreams.filter((u) => u.kind === kind).map((u) => u.name);
    if (scoped.length === 0) throw new TeamsError(`no upstream named "${service}" or of the kind it implies`, base);
    // Janus keeps its sections apart; here each applies to upstreams, and two on one upstream (thanos and
    // mimir → every prometheus upstream) would OR their selectors and join their tenants there.
    for (const u of scoped) {
      const other = sectionOf.get(u);
      if (other !== undefined) {
        throw new TeamsError(`sections "${other}" and "${service}" both apply to upstream "${u}" (a kind name covers every upstream of that kind), so their constraints would merge there: key each section by its upstream's name`, base);
      }
      sectionOf.set(u, service);
    }
    for (const key of Object.keys(body)) {
      if (key !== 'user-label-constraints' && key !== 'tenant-header-constraints') throw new TeamsError(`unknown key "${key}"`, [...base, key]);
    }
    const ensure = (who: string): PolicyTeam => {
      const id = `janus:${service}:${who}`;
      return (teams[id] ??= { groups: [who], users: [who], upstreams: scoped, selectors: [], headers: {}, labels: ['*'] });
    };
    const labelConstraints = body['user-label-constraints'];
    if (labelConstraints !== undefined) {
      if (!isRecord(labelConstraints)) throw new TeamsError('expected a map of user/group → constraints', [...base, 'user-label-constraints']);
      for (const [who, c] of Object.entries(labelConstraints)) {
        const p = [...base, 'user-label-constraints', who];
        if (!isRecord(c)) throw new TeamsError('expected a map of label → values', p);
        const team = ensure(who);
        const group: Matcher[] = [];
        for (const [label, values] of Object.entries(c)) {
          if (label === 'header') {
            Object.assign(team.headers, janusHeaders(values, [...p, label]));
            continue;
          }
          const list = Array.isArray(values) ? values : [values];
          if (!list.every((v): v is string => typeof v === 'string')) throw new TeamsError('values must be strings', [...p, label]);
          if (label === 'labels') {
            team.labels = list;
            continue;
          }
          group.push(parseValueList(label, list.map(janusValue), [...p, label]));
        }
        // Janus: a user with only a `labels` allowlist and no value constraints sees all values
        // of those labels; we make that explicit rather than producing an empty (allow-all) group.
        if (group.length === 0) throw new TeamsError('no label value constraints: add at least one label with values (use "*" for any)', p);
        team.selectors.push(group);
      }
    }
    const headerConstraints = body['tenant-header-constraints'];
    if (headerConstraints !== undefined) {
      if (!isRecord(headerConstraints)) throw new TeamsError('expected a map of user/group → {header}', [...base, 'tenant-header-constraints']);
      for (const [who, c] of Object.entries(headerConstraints)) {
        const p = [...base, 'tenant-header-constraints', who];
        if (!isRecord(c)) throw new TeamsError('expected {header: …}', p);
        // Janus joins the tenants of all of a subject's groups with the labels of any key; here a key's
        // tenant goes with that key's own label constraints, so a tenant on a key without any would
        // never be applied (the member's requests would go without it, or with the upstream's own header).
        if (!isRecord(labelConstraints) || !Object.hasOwn(labelConstraints, who)) {
          throw new TeamsError(
            `"${who}" has a tenant header but no user-label-constraints in this section: the gateway applies a key's tenant only with that key's own label constraints. Add "${who}" under user-label-constraints (e.g. namespace: ["*"]), or move the header to the key that has them`,
            p,
          );
        }
        Object.assign(ensure(who).headers, janusHeaders(c['header'], [...p, 'header']));
      }
    }
  }
  return { teams, adminHeaders };
}

// ---- The decision bounds ----------------------------------------------------

/** What the bounds check reads of a config (parsed or loaded). */
export interface BoundsConfig {
  readonly upstreams: readonly { readonly name: string; readonly kind: 'prometheus' | 'loki' | 'tempo' }[];
  readonly policy: { readonly attributes: Partial<Record<'prometheus' | 'loki' | 'tempo', Record<string, string>>>; readonly wasm?: string | undefined; readonly bundle?: unknown };
}

/** How large the default policy's decision for a set of granting teams is, in DECISION_LIMITS' terms. */
export interface DecisionSize {
  readonly groups: number;
  readonly maxMatchersPerGroup: number;
  readonly headers: number;
  /** UTF-8 bytes of the matcher names and values, header names and values, and the reason. */
  readonly stringBytes: number;
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/**
 * The decision the default policy (policies/lbac/decision.rego) returns when
 * exactly `names` grant a request to an upstream of a kind with `attributes`
 * (selector name → backend name), measured as src/policy/decision.ts measures
 * it: the union of the teams' alternatives (each a set of mapped matchers,
 * identical ones once), their headers merged case-insensitively with the union
 * of their "|"-separated values, and the reason "teams: a,b".
 */
export function teamDecisionSize(teams: Readonly<Record<string, PolicyTeam>>, names: readonly string[], attributes: Readonly<Record<string, string>>): DecisionSize {
  const groups = new Map<string, number>();
  let stringBytes = utf8Bytes(`teams: ${[...names].sort().join(',')}`);
  const headers = new Map<string, { names: Set<string>; values: Set<string> }>();
  for (const name of names) {
    const team = teams[name]!;
    for (const group of team.selectors) {
      const matchers = new Map<string, number>();
      for (const m of group) {
        const mapped = attributes[m.name];
        const backendName = typeof mapped === 'string' && mapped !== '' ? mapped : m.name;
        matchers.set(JSON.stringify([backendName, m.op, m.value]), utf8Bytes(backendName) + utf8Bytes(m.value));
      }
      const key = JSON.stringify([...matchers.keys()].sort());
      if (groups.has(key)) continue;
      groups.set(key, matchers.size);
      for (const bytes of matchers.values()) stringBytes += bytes;
    }
    for (const [header, raw] of Object.entries(team.headers)) {
      const values = raw.split('|').filter((v) => v !== '');
      if (values.length === 0) continue;
      const entry = headers.get(header.toLowerCase()) ?? { names: new Set<string>(), values: new Set<string>() };
      headers.set(header.toLowerCase(), entry);
      entry.names.add(header);
      for (const v of values) entry.values.add(v);
    }
  }
  for (const { names: spellings, values } of headers.values()) stringBytes += utf8Bytes([...spellings].sort()[0]!) + utf8Bytes([...values].sort().join('|'));
  return { groups: groups.size, maxMatchersPerGroup: Math.max(0, ...groups.values()), headers: headers.size, stringBytes };
}

/** Which of DECISION_LIMITS a decision of `size` exceeds, in words; undefined when it fits. */
export function decisionBoundProblem(size: DecisionSize): string | undefined {
  const L = DECISION_LIMITS;
  const over: string[] = [];
  if (size.groups > L.maxGroups) over.push(`${size.groups} selector alternatives (at most ${L.maxGroups})`);
  if (size.maxMatchersPerGroup > L.maxMatchersPerGroup) over.push(`an alternative of ${size.maxMatchersPerGroup} matchers (at most ${L.maxMatchersPerGroup})`);
  if (size.headers > L.maxHeaders) over.push(`${size.headers} headers (at most ${L.maxHeaders})`);
  if (size.stringBytes > L.maxStringBytes) over.push(`${size.stringBytes} bytes of names, values and reason (at most ${L.maxStringBytes})`);
  return over.length === 0 ? undefined : over.join(', ');
}

/** The configured upstreams a team covers (its `upstreams`, "*" for all), with the attribute mapping of each one's kind. */
export function coveredUpstreams(team: PolicyTeam, config: BoundsConfig): { name: string; attributes: Record<string, string> }[] {
  return config.upstreams
    .filter((u) => team.upstreams.includes('*') || team.upstreams.includes(u.name))
    .map((u) => ({ name: u.name, attributes: config.policy.attributes[u.kind] ?? {} }));
}

/** A decision over the bounds: whose (a team's members, or undefined: the admins'), what exceeds, for which upstreams. */
export interface OverBounds {
  readonly team: string | undefined;
  readonly problem: string;
  readonly upstreams: readonly string[];
}

/**
 * The admins' decision and each team's alone that are over the decision bounds:
 * every request its members send to the upstreams named fails with 500 (a
 * malformed decision), whatever other teams they are in (more teams only add
 * to it, or deny). Empty when every one fits.
 */
export function decisionsOverBounds(data: PolicyData, config: BoundsConfig): OverBounds[] {
  const out: OverBounds[] = [];
  const adminHeaders = Object.entries(data.admins.headers);
  const adminBytes = utf8Bytes('admin') + adminHeaders.reduce((n, [k, v]) => n + utf8Bytes(k) + utf8Bytes(v), 0);
  const adminProblem = decisionBoundProblem({ groups: 0, maxMatchersPerGroup: 0, headers: adminHeaders.length, stringBytes: adminBytes });
  if (adminProblem !== undefined) out.push({ team: undefined, problem: adminProblem, upstreams: config.upstreams.map((u) => u.name) });
  for (const [name, team] of Object.entries(data.teams)) {
    const byProblem = new Map<string, string[]>();
    for (const u of coveredUpstreams(team, config)) {
      const problem = decisionBoundProblem(teamDecisionSize(data.teams, [name], u.attributes));
      if (problem !== undefined) byProblem.set(problem, [...(byProblem.get(problem) ?? []), u.name]);
    }
    for (const [problem, upstreams] of byProblem) out.push({ team: name, problem, upstreams });
  }
  return out;
}

/** Whether the default policy decides: no policy.wasm, no bundle (a custom policy may shape its decisions otherwise). */
export const usesDefaultPolicy = (config: { readonly policy: Pick<BoundsConfig['policy'], 'wasm' | 'bundle'> }): boolean => config.policy.wasm === undefined && config.policy.bundle === undefined;

/** Where in the YAML a team is defined: teams.<name>, or the Janus entry it came from. */
function teamPath(name: string): (string | number)[] {
  const janus = /^janus:([^:]*):(.*)$/s.exec(name);
  return janus === null ? ['teams', name] : ['janus', janus[1]!];
}

/** Message of a single team's (or the admins') decision over the bounds. */
export function overBoundsMessage(over: OverBounds): string {
  const who = over.team === undefined ? 'admins: the decision for an admin' : `teams.${over.team}: the decision for its members`;
  return `${who} would hold ${over.problem}, more than the gateway accepts from a policy (src/policy/decision.ts): every such request to ${over.upstreams.map((u) => JSON.stringify(u)).join(', ')} would fail with 500. Split the team's selectors (fewer, broader alternatives; value lists instead of one alternative per value) or its headers.`;
}

/**
 * `data.lbac.claimsMode` (policies/lbac/claims.rego). `issuers` is there only
 * when set: its absence is what tells the policy that every issuer's claims
 * count, and an empty or malformed list trusts no one.
 */
function claimsModeData(mode: ClaimsModeConfig): ClaimsModeConfig {
  const { issuers, ...rest } = mode;
  return { ...rest, ...(issuers === undefined ? {} : { issuers: [...issuers] }) };
}

export function buildPolicyData(config: ParsedConfig): PolicyData {
  const teams: Record<string, PolicyTeam> = {};
  for (const [name, team] of Object.entries(config.teams)) teams[name] = normaliseTeam(team, ['teams', name]);
  const admins = { groups: config.admins.groups, users: config.admins.users, headers: { ...config.admins.headers } };
  if (config.janus !== undefined) {
    const fromJanus = teamsFromJanus(config.janus, config.upstreams);
    for (const [id, t] of Object.entries(fromJanus.teams)) {
      if (teams[id] !== undefined) throw new TeamsError(`team "${id}" defined twice`, ['janus']);
      teams[id] = t;
    }
    admins.headers = { ...fromJanus.adminHeaders, ...admins.headers };
  }
  const attributes: Record<string, Record<string, string>> = {};
  for (const [kind, map] of Object.entries(config.policy.attributes)) attributes[kind] = { ...map };
  const data: PolicyData = { admins, teams, attributes, ...(config.policy.claimsMode === undefined ? {} : { claimsMode: claimsModeData(config.policy.claimsMode) }) };
  // The default policy returns a team's selectors and headers as they are: one over the decision bounds makes every
  // request of its members fail at runtime, so it is refused here (a custom policy may differ: a warning, warnings.ts).
  if (usesDefaultPolicy(config)) {
    const [over] = decisionsOverBounds(data, config);
    if (over !== undefined) throw new TeamsError(overBoundsMessage(over), over.team === undefined ? ['admins', 'headers'] : teamPath(over.team));
  }
  return data;
}

/** Exposed for tests: the AND-group a compact alternative becomes. */
export function compactAlternative(alt: Record<string, string | string[]>): MatcherGroup {
  return normaliseTeam({ groups: [], users: [], upstreams: ['*'], selectors: [alt], headers: {}, labels: ['*'] }, []).selectors[0] ?? [];
}
