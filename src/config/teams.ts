import { RE2JS } from 're2js';
import { checkMatcherRegex, type Matcher, type MatcherGroup } from '../rewrite/matcher.ts';
import { policyHeaderProblem } from '../util/header-name.ts';
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
    if (typeof v !== 'string' && typeof v !== 'number') throw new TeamsError('header value must be a string', p);
    const name = k.trim();
    const value = String(v).trim();
    // The same rules as native teams' headers (config/schema.ts): refused at load, not on every request.
    const problem = policyHeaderProblem(name, value) ?? (value.split('|').every((v) => v.trim() === '') ? `the value of ${JSON.stringify(name)} is empty` : undefined);
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
        Object.assign(ensure(who).headers, janusHeaders(c['header'], [...p, 'header']));
      }
    }
  }
  return { teams, adminHeaders };
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
  const claimsMode = config.policy.claimsMode;
  return { admins, teams, attributes, ...(claimsMode === undefined ? {} : { claimsMode: { ...claimsMode } }) };
}

/** Exposed for tests: the AND-group a compact alternative becomes. */
export function compactAlternative(alt: Record<string, string | string[]>): MatcherGroup {
  return normaliseTeam({ groups: [], users: [], upstreams: ['*'], selectors: [alt], headers: {}, labels: ['*'] }, []).selectors[0] ?? [];
}
