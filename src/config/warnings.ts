import type { GatewayConfig } from './load.ts';
import { matcherMatches } from '../rewrite/matcher.ts';
import { fieldNameOrNull } from '../rewrite/traceql-escape.ts';
import { isTagConditionField } from '../rewrite/traceql-syntax.ts';
import { headerKey } from '../util/header-name.ts';
import { cleartextRemote } from '../util/loopback.ts';
import { shownUrl } from '../util/shown-url.ts';
import { namespaceOf, reservedNamespaces, type ReservedNamespace } from '../identity/namespace.ts';
import { coveredUpstreams, decisionBoundProblem, decisionsOverBounds, overBoundsMessage, teamDecisionSize, usesDefaultPolicy, type PolicyTeam } from './teams.ts';

/** Does a (load-checked) regex match the empty string, fully anchored as the backends read it? */
function matchesEmpty(re: string): boolean {
  try {
    return matcherMatches({ name: 'x', op: '=~', value: re }, '');
  } catch {
    return false;
  }
}

/** Claims that an identity provider may let their holder choose or change (OIDC Core §5.1 and common IdPs). */
const MUTABLE_CLAIMS = new Set(['preferred_username', 'username', 'nickname', 'name', 'given_name', 'family_name', 'email', 'login', 'upn', 'unique_name']);

type Provider = GatewayConfig['identity']['providers'][number];

/** The URLs of an identity provider that keys, tokens or client secrets travel over. */
function providerUrls(p: Provider): (string | undefined)[] {
  switch (p.type) {
    case 'jwt':
      return [p.jwksUrl];
    case 'oidc':
      return [p.issuer, p.jwksUrl];
    case 'introspection':
      return [p.issuer, p.introspectionUrl];
    case 'grafana':
      return [p.url, p.jwksUrl];
    default:
      return [];
  }
}

/**
 * Where a provider that takes subjects and groups from a third party's tokens
 * (jwt, oidc, introspection, grafana) gets them: its issuer, trailing "/"
 * ignored. An introspection source without `issuer` is known by its endpoint
 * (`byEndpoint`), which lies under its issuer's URL at most providers.
 * Undefined for the sources whose subjects the operator writes (apikey, basic, mtls).
 */
function tokenIssuer(p: Provider): { issuer: string; byEndpoint: boolean } | undefined {
  const trim = (u: string) => u.replace(/\/+$/, '');
  switch (p.type) {
    case 'jwt':
    case 'oidc':
      return { issuer: trim(p.issuer), byEndpoint: false };
    case 'introspection':
      return p.issuer !== undefined ? { issuer: trim(p.issuer), byEndpoint: false } : { issuer: trim(p.introspectionUrl!), byEndpoint: true };
    case 'grafana':
      return { issuer: trim(p.url), byEndpoint: false };
    default:
      return undefined;
  }
}

type Upstream = GatewayConfig['upstreams'][number];

/**
 * The secrets an upstream's requests carry as they are: the basic or bearer
 * credential of auth, an Authorization set in headers, or the clients'
 * own (forwardAuthorization). Not sigv4's: a signature gives away no key.
 */
function upstreamCredentials(u: Upstream): string[] {
  const sent: string[] = [];
  if (u.auth?.type === 'basic' || u.auth?.type === 'bearer') sent.push(`the ${u.auth.type} credential of auth`);
  for (const name of Object.keys(u.headers)) if (headerKey(name) === 'authorization') sent.push(`the ${JSON.stringify(name)} of headers`);
  if (u.forwardAuthorization) sent.push("the clients' own Authorization (forwardAuthorization)");
  return sent;
}

/** A provider named in a warning by its issuer, or its introspection endpoint shown without query (an api_key there). */
function name(x: { p: Provider; i: number; from: { issuer: string; byEndpoint: boolean } }): string {
  return `identity.providers[${x.i}] (${x.p.type}, ${x.from.byEndpoint ? `introspection endpoint ${JSON.stringify(shownUrl(x.from.issuer))}` : `issuer ${JSON.stringify(x.from.issuer)}`})`;
}

function sameIssuer(a: { issuer: string; byEndpoint: boolean }, b: { issuer: string; byEndpoint: boolean }): boolean {
  if (a.issuer === b.issuer) return true;
  // An introspection endpoint under the other's issuer URL (Keycloak: <issuer>/protocol/openid-connect/token/introspect).
  return (a.byEndpoint && !b.byEndpoint && a.issuer.startsWith(`${b.issuer}/`)) || (b.byEndpoint && !a.byEndpoint && b.issuer.startsWith(`${a.issuer}/`));
}

/**
 * Token providers of different issuers whose groups or subject ids share one
 * namespace (src/identity/prefix.ts): team and admin entries cannot tell them
 * apart, so either issuer can grant what the other's groups and subjects are
 * granted (a partner IdP minting `groups: [team-a]`, or an admin's `sub`).
 */
function sharedNamespaces(providers: readonly Provider[]): string[] {
  const out: string[] = [];
  const tokens = providers.flatMap((p, i) => {
    const from = tokenIssuer(p);
    return from === undefined ? [] : [{ p, i, from }];
  });
  for (const [n, a] of tokens.entries()) {
    for (const b of tokens.slice(n + 1)) {
      if (sameIssuer(a.from, b.from)) continue;
      const groups = (a.p.groupsPrefix ?? '') === (b.p.groupsPrefix ?? '');
      const users = (a.p.usersPrefix ?? '') === (b.p.usersPrefix ?? '');
      if (!groups && !users) continue;
      const shared = [...(groups ? ['groups'] : []), ...(users ? ['subjects'] : [])].join(' and ');
      const unset = [...(groups ? ['groupsPrefix'] : []), ...(users ? ['usersPrefix'] : [])].join(' and ');
      const risk = [
        ...(groups ? ["team and admin groups entries grant to either issuer's tokens carrying that group"] : []),
        ...(users ? ["users entries match either issuer's sub (and trusted username)"] : []),
      ].join(', and ');
      out.push(
        `${name(a)} and ${name(b)} are different issuers whose ${shared} share one namespace (${unset} unset or equal on both): ${risk}. Set ${unset} on one of them (e.g. "partner:") and write the team and admin entries for its subjects with that prefix (docs/identity.md#several-identity-providers-prefixes).`,
      );
    }
  }
  return out;
}

/**
 * The claims-driven mode (policies/lbac/claims.rego) reads a token's own
 * `namespaces` / `labels` claims, which no provider prefix touches. Without
 * `policy.claimsMode.issuers` every token issuer can name any namespace;
 * with it, an entry no provider's subjects carry never matches (a typo
 * refuses everyone it was meant for), and an introspection source without
 * `issuer` passes on whatever "iss" its answers name (src/identity/introspection.ts),
 * so it can carry another, listed issuer.
 */
function claimsModeIssuers(config: GatewayConfig): string[] {
  const mode = config.policy.claimsMode;
  if (mode === undefined || !mode.enabled) return [];
  const tokens = config.identity.providers.flatMap((p, i) => {
    const from = tokenIssuer(p);
    return from === undefined ? [] : [{ p, i, from }];
  });
  const out: string[] = [];
  if (mode.issuers === undefined) {
    const distinct: typeof tokens = [];
    for (const t of tokens) if (!distinct.some((d) => sameIssuer(d.from, t.from))) distinct.push(t);
    if (distinct.length >= 2) {
      out.push(
        `policy.claimsMode reads the namespaces and labels claims of every token issuer, and ${distinct.map(name).join(', ')} are different issuers: each can grant its tokens any namespace and label through those claims (provider prefixes do not apply to them). Set policy.claimsMode.issuers to the issuer(s) whose claims should decide (docs/identity.md#claims-driven-policy-mode).`,
      );
    }
    return out;
  }
  // The policy compares the subject's issuer with trailing "/" ignored, as tokenIssuer gives it.
  const listed = mode.issuers.map((iss) => ({ issuer: iss.replace(/\/+$/, ''), byEndpoint: false }));
  const unchecked = tokens.filter((t) => t.p.type === 'introspection' && t.from.byEndpoint);
  for (const t of unchecked) {
    const others = mode.issuers.filter((_, k) => !sameIssuer(listed[k]!, t.from));
    if (others.length === 0) continue;
    out.push(
      `${name(t)} has no issuer: the "iss" of its answers is not checked and becomes the subject's issuer as the endpoint sends it, so its tokens can carry ${others.map((o) => JSON.stringify(o)).join(', ')} from policy.claimsMode.issuers and be decided by their claims. Set issuer on it (its answers' "iss" must then equal it).`,
    );
  }
  // Whether an entry is a typo is known only when every token provider's issuer is.
  if (unchecked.length > 0) return out;
  const known = new Set(tokens.map((t) => t.from.issuer));
  const none = listed.every((l) => !known.has(l.issuer));
  const fate = none ? ` No entry is a configured issuer: claims decide for no one, every non-admin subject is ${mode.teamsFallback ? 'decided by the teams' : 'refused (403)'}.` : '';
  mode.issuers.forEach((iss, k) => {
    if (known.has(listed[k]!.issuer)) return;
    out.push(
      `policy.claimsMode.issuers[${k}] ${JSON.stringify(iss)} is the issuer of no configured token provider (jwt, oidc, introspection, grafana; trailing "/" aside): no subject carries it.${fate} A typo? Configured: ${known.size === 0 ? 'none' : [...known].map((x) => JSON.stringify(x)).join(', ')}.`,
    );
  });
  return out;
}

/**
 * Prefixes one inside another (src/identity/namespace.ts): "p:q:" is carved
 * out of "p:", so the provider(s) prefixed "p:" lose every name that would
 * land there (groups dropped, subjects refused), and team entries "p:q:…"
 * name the inner provider's subjects only. Valid (the operator put one
 * provider in another's namespace), but rarely meant.
 */
function nestedPrefixes(providers: readonly Provider[]): string[] {
  const out: string[] = [];
  const kinds = [
    { key: 'groupsPrefix', of: (p: Provider) => p.groupsPrefix, names: 'groups', fate: 'dropped' },
    { key: 'usersPrefix', of: (p: Provider) => p.usersPrefix, names: 'subject ids', fate: 'refused (401; a username there is dropped)' },
  ] as const;
  for (const kind of kinds) {
    const all = providers.map(kind.of);
    providers.forEach((outer, i) => {
      const p = kind.of(outer);
      if (p === undefined) return;
      // The namespaces carved out of p's: the same rule the Authenticator applies (src/identity/namespace.ts).
      for (const { prefix: q, providers: inners } of reservedNamespaces(p, all)) for (const j of inners) {
        const inner = providers[j]!;
        out.push(
          `identity.providers[${j}] (${inner.type}) ${kind.key} ${JSON.stringify(q)} lies inside identity.providers[${i}] (${outer.type})'s namespace ${JSON.stringify(p)}: every prefix reserves its namespace, so the ${kind.names} identity.providers[${i}] yields that start with ${JSON.stringify(q.slice(p.length))} are ${kind.fate}, and entries ${JSON.stringify(`${q}…`)} name identity.providers[${j}]'s only. If that is not meant, use prefixes neither of which starts with the other (e.g. "corp:" and "partner:") (docs/identity.md#several-identity-providers-prefixes).`,
        );
      }
    });
  }
  return out;
}

/**
 * Names the operator wrote for apikey, basic and mtls subjects that land, after
 * their provider's prefix, in another provider's namespace: the Authenticator
 * drops such groups (and usernames) and refuses such subject ids.
 */
function staticNamesInOthersNamespaces(providers: readonly Provider[]): string[] {
  const out: string[] = [];
  const groupsPrefixes = providers.map((p) => p.groupsPrefix);
  const usersPrefixes = providers.map((p) => p.usersPrefix);
  const owner = (ns: ReservedNamespace) => `${ns.providers.map((k) => `identity.providers[${k}]`).join(', ')}'s namespace ${JSON.stringify(ns.prefix)}`;
  providers.forEach((p, i) => {
    const groups = reservedNamespaces(p.groupsPrefix, groupsPrefixes);
    const users = reservedNamespaces(p.usersPrefix, usersPrefixes);
    if (groups.length === 0 && users.length === 0) return;
    const g = p.groupsPrefix ?? '';
    const u = p.usersPrefix ?? '';
    const check = (where: string, what: string, name: string, prefix: string, reserved: readonly ReservedNamespace[], fate: string) => {
      const ns = namespaceOf(prefix + name, reserved);
      if (ns === undefined) return false;
      const shown = prefix === '' ? JSON.stringify(name) : `${JSON.stringify(name)} (${JSON.stringify(prefix + name)} with its prefix)`;
      out.push(`identity.providers[${i}] (${p.type}) ${where}: the ${what} ${shown} lies in ${owner(ns)}, which every prefix reserves for its provider: ${fate}.`);
      return true;
    };
    // A static subject's sub and username default to the key name / username (src/identity/static.ts).
    const statics =
      p.type === 'apikey'
        ? p.keys.map((k, n) => ({ where: `keys[${n}] (${JSON.stringify(k.name)})`, name: k.name, subject: k.subject, uses: 'the key' }))
        : p.type === 'basic'
          ? p.users.map((x, n) => ({ where: `users[${n}] (${JSON.stringify(x.username)})`, name: x.username, subject: x.subject, uses: 'the user' }))
          : [];
    for (const { where, name, subject, uses } of statics) {
      // A refused subject's username does not matter.
      if (!check(where, 'subject id', subject.sub ?? name, u, users, `${uses} is refused (401)`)) check(where, 'username', subject.username ?? name, u, users, 'it is dropped from the subject');
      for (const group of subject.groups) check(where, 'group', group, g, groups, `it is dropped when ${uses} authenticates`);
    }
    if (p.type === 'mtls') {
      p.mapping.forEach((m, n) => {
        const where = `mapping[${n}] (${JSON.stringify(m.subject)})`;
        check(where, 'certificate subject', m.subject, u, users, 'certificates with it are refused (401)');
        for (const group of m.groups) check(where, 'group', group, g, groups, 'it is dropped when such a certificate authenticates');
      });
    }
  });
  return out;
}

/**
 * Settings that are valid but probably not meant: printed by `check-config`
 * and logged at start. A warning never stops the gateway.
 */
export function configWarnings(config: GatewayConfig): string[] {
  const out: string[] = [];
  config.identity.providers.forEach((p, i) => {
    // Over plain HTTP anyone on the path can answer: serve their own signing keys (and so mint any token),
    // call any token active, or read the tokens and client secret sent.
    const cleartext = providerUrls(p).filter((u): u is string => cleartextRemote(u));
    if (cleartext.length > 0) {
      out.push(
        `identity.providers[${i}] (${p.type}): ${cleartext.map((u) => JSON.stringify(shownUrl(u))).join(', ')} is plain HTTP to another host: anyone on the path can serve their own keys or answers (and so any identity) and read what is sent. Use https.`,
      );
    }
    // RFC 7662 says nothing of audiences: many providers (Keycloak) call any valid token of the realm active,
    // including tokens issued for other services, which this gateway would then accept.
    if (p.type === 'introspection' && p.audience === undefined) {
      out.push(
        `identity.providers[${i}] (introspection): no audience; the provider may call tokens issued for other services active, and the gateway would accept them. Set audience to this gateway's audience (the response "aud" must then contain it).`,
      );
    }
    // ouAsGroups was true by default before: a config written then that relies on OU groups without saying
    // so now grants nothing through them (403s). Unset is told apart from false (the schema has no default).
    if (p.type === 'mtls' && p.ouAsGroups === undefined) {
      out.push(
        `identity.providers[${i}] (mtls): ouAsGroups is not set; certificate OU values are not used as groups by default (they were before). Set ouAsGroups: true to keep the old behaviour (only if the client CA controls OUs), or ouAsGroups: false to silence this warning.`,
      );
    }
    if (!('claims' in p)) return;
    const { subject, username, trustUsername } = p.claims;
    // `users` entries match the subject; a subject read from a claim its holder can set makes
    // those entries choosable, which is what trustUsername is there to state explicitly.
    if (!trustUsername && (MUTABLE_CLAIMS.has(subject.slice(subject.lastIndexOf('.') + 1)) || subject === username)) {
      out.push(
        `identity.providers[${i}] (${p.type}): claims.subject is "${subject}", a claim its holder may be able to choose or change; team and admin users entries match the subject. Map the subject to a stable id (e.g. "sub"), or set claims.trustUsername: true if this provider's "${subject}" is unique and fixed.`,
      );
    }
  });
  out.push(...sharedNamespaces(config.identity.providers));
  out.push(...nestedPrefixes(config.identity.providers));
  out.push(...staticNamesInOthersNamespaces(config.identity.providers));
  out.push(...claimsModeIssuers(config));
  const upstreamNames = new Set(config.upstreams.map((u) => u.name));
  for (const [name, team] of Object.entries(config.policyData.teams)) {
    // An alternative with no positive matcher reaches every series but the ones it names (a misspelt
    // label under a negation reaches everything): valid, but rarely meant.
    team.selectors.forEach((group, i) => {
      if (group.every((m) => m.op === '!=' || m.op === '!~' || (m.op === '=~' && m.value === '.*'))) {
        out.push(`teams.${name}.selectors[${i}] has no positive matcher (${group.map((m) => `${m.name}${m.op}${JSON.stringify(m.value)}`).join(', ')}): it grants every series except those it names, including series without these labels.`);
      }
    });
    // A regex that matches "" also grants series without the label: usually a stray "|" (`~team-a|`).
    team.selectors.forEach((group, i) => {
      for (const m of group) {
        if (m.op === '=~' && m.value !== '.*' && matchesEmpty(m.value)) {
          out.push(`teams.${name}.selectors[${i}].${m.name}: the regex ${JSON.stringify(m.value)} matches the empty string, so it also grants series without "${m.name}".`);
        }
      }
    });
    if (team.groups.length === 0 && team.users.length === 0) out.push(`teams.${name} names no groups and no users: it grants nothing.`);
    if (team.selectors.length === 0) out.push(`teams.${name} has no selectors: it grants nothing.`);
    if (team.upstreams.length === 0) out.push(`teams.${name}.upstreams is empty: it grants nothing.`);
    const unknown = team.upstreams.filter((u) => u !== '*' && !upstreamNames.has(u));
    if (unknown.length > 0) out.push(`teams.${name}.upstreams names no configured upstream: ${unknown.map((u) => JSON.stringify(u)).join(', ')}.`);
    // Loaded for the policy (data.lbac), but the default policy and the gateway do not enforce it.
    if (!(team.labels.length === 1 && team.labels[0] === '*')) {
      out.push(`teams.${name}.labels (${JSON.stringify(team.labels)}) is not enforced: every label name the team's selectors reach stays visible. Restrict with selectors, or remove labels.`);
    }
  }
  config.upstreams.forEach((u, i) => {
    // Over plain HTTP anyone on the path reads the credential and can query the upstream with it.
    const sent = cleartextRemote(u.url) ? upstreamCredentials(u) : [];
    if (sent.length > 0) {
      out.push(`upstreams[${i}] (${u.name}): ${JSON.stringify(shownUrl(u.url))} is plain HTTP to another host, and ${sent.join(' and ')} ${sent.length > 1 ? 'are' : 'is'} sent in the clear: anyone on the path can read it and use it. Use https.`);
    }
  });
  const bundle = config.policy.bundle;
  if (bundle !== undefined && cleartextRemote(bundle.url)) {
    out.push(
      `policy.bundle.url ${JSON.stringify(shownUrl(bundle.url))} is plain HTTP to another host: ${bundle.signing === undefined ? 'without policy.bundle.signing anyone on the path can serve the gateway a policy' : 'signed bundles cannot be forged there, but an older signed one can be replayed'}${bundle.auth.type === 'none' ? '' : ', and the bundle credential is sent in the clear'}. Use https.`,
    );
  }
  // Tempo's tag APIs ignore every condition of a lookup holding an unscoped attribute or an intrinsic their block readers
  // cannot place, so the gateway refuses tag lookups under such a policy (src/backends/tempo.ts).
  if (config.upstreams.some((u) => u.kind === 'tempo')) {
    for (const [label, attribute] of Object.entries(config.policy.attributes.tempo ?? {})) {
      if (!isTagConditionField(attribute)) {
        out.push(
          `policy.attributes.tempo.${label} is ${JSON.stringify(attribute)}: Tempo's tag APIs cannot be restricted by a condition on it (an unscoped attribute or such an intrinsic makes them list every tag and value), so restricted subjects' tag-name and tag-value lookups (Grafana's autocomplete) are refused. Use a scoped attribute, e.g. resource.${attribute.replace(/^\./, '')}.`,
        );
      }
    }
  }
  out.push(...tempoIntrinsicLabels(config));
  out.push(...teamTenantConflicts(config.policyData.teams));
  out.push(...decisionBoundWarnings(config));
  return out;
}

/**
 * A team label whose name is a TraceQL string intrinsic (`name`, cAdvisor's container label, is the
 * span's name) reaches Tempo as that intrinsic unless policy.attributes.tempo maps it: the team
 * then sees every span so named, whichever service wrote it (a span's name is its instrumenter's choice).
 */
function tempoIntrinsicLabels(config: GatewayConfig): string[] {
  const out: string[] = [];
  const tempo = new Set(config.upstreams.filter((u) => u.kind === 'tempo').map((u) => u.name));
  if (tempo.size === 0) return out;
  const mapped = config.policy.attributes.tempo ?? {};
  for (const [name, team] of Object.entries(config.policyData.teams)) {
    const reached = coveredUpstreams(team, config).map((u) => u.name).filter((u) => tempo.has(u));
    if (reached.length === 0) continue;
    const labels = new Set(team.selectors.flat().map((m) => m.name).filter((l) => mapped[l] === undefined && isStringIntrinsic(l)));
    for (const label of labels) {
      out.push(
        `teams.${name}: the selector label "${label}" is TraceQL's "${label}" intrinsic on Tempo (${reached.map((u) => JSON.stringify(u)).join(', ')}), not a label: the team sees every span with that ${label === 'name' ? 'span name' : 'value'}, whichever service wrote it. Map it with policy.attributes.tempo (e.g. ${label}: resource.${label}), or limit the team's upstreams.`,
      );
    }
  }
  return out;
}

function isStringIntrinsic(label: string): boolean {
  return fieldNameOrNull(label)?.kind === 'intrinsic';
}

/**
 * Decisions over the policy decision bounds (src/policy/decision.ts) that the
 * config can make: with a custom policy, a team's alone (with the default one
 * that is a config error: teams.ts); with any, the teams that one group or
 * user entry grants together (their union is one decision), unless they
 * conflict (then the default policy denies). Combinations of teams through
 * several groups of one subject are not enumerated.
 */
function decisionBoundWarnings(config: GatewayConfig): string[] {
  const out: string[] = [];
  const teams = config.policyData.teams;
  if (!usesDefaultPolicy(config)) {
    for (const over of decisionsOverBounds(config.policyData, config)) out.push(`${overBoundsMessage(over)} (Measured as the default policy returns teams; policy.${config.policy.bundle === undefined ? 'wasm' : 'bundle'} may return otherwise.)`);
  }
  const alone = new Set(decisionsOverBounds(config.policyData, config).map((o) => o.team));
  // Member entries (group or user) → the teams naming them.
  const byMember = new Map<string, string[]>();
  for (const [name, team] of Object.entries(teams)) {
    for (const key of [...team.groups.map((g) => `group ${JSON.stringify(g)}`), ...team.users.map((u) => `user ${JSON.stringify(u)}`)]) byMember.set(key, [...(byMember.get(key) ?? []), name]);
  }
  // Each combination once: its teams → the members and upstreams where it meets, and its problem.
  const found = new Map<string, { members: Set<string>; upstreams: Set<string>; problem: string }>();
  for (const [member, names] of byMember) {
    if (names.length < 2 || names.some((n) => alone.has(n))) continue;
    for (const u of config.upstreams) {
      const granting = names.filter((n) => coveredUpstreams(teams[n]!, { ...config, upstreams: [u] }).length > 0).sort();
      if (granting.length < 2 || conflicting(teams, granting)) continue;
      const key = JSON.stringify(granting);
      const attributes = config.policy.attributes[u.kind] ?? {};
      const entry = found.get(key);
      if (entry !== undefined) {
        entry.members.add(member);
        entry.upstreams.add(u.name);
        continue;
      }
      const problem = decisionBoundProblem(teamDecisionSize(teams, granting, attributes));
      if (problem !== undefined) found.set(key, { members: new Set([member]), upstreams: new Set([u.name]), problem });
    }
  }
  for (const [key, { members, upstreams, problem }] of found) {
    const names = JSON.parse(key) as string[];
    out.push(
      `teams ${names.join(', ')} together (${[...members].join(', ')} is in all of them) make a decision of ${problem}, more than the gateway accepts from a policy (src/policy/decision.ts): such members' requests to ${[...upstreams].map((u) => JSON.stringify(u)).join(', ')} fail with 500 unless they name one team with X-Lbac-Team. Give them fewer, broader alternatives.`,
    );
  }
  return out;
}

/** Whether the default policy denies for these granting teams: two set different headers (tenants) and grant different selectors. */
function conflicting(teams: Readonly<Record<string, PolicyTeam>>, names: readonly string[]): boolean {
  for (const a of names) for (const b of names) if (headerSet(teams[a]!.headers) !== headerSet(teams[b]!.headers) && selectorSet(teams[a]!.selectors) !== selectorSet(teams[b]!.selectors)) return true;
  return false;
}

/** A team's headers as a canonical string: lower-case names, single "|"-separated values, sorted. */
function headerSet(headers: Record<string, string>): string {
  const pairs = Object.entries(headers).flatMap(([n, v]) => v.split('|').filter((x) => x !== '').map((x) => `${n.toLowerCase()}=${x}`));
  return JSON.stringify([...new Set(pairs)].sort());
}

/** A team's selector alternatives as a canonical string (each group's matchers sorted, groups sorted). */
function selectorSet(selectors: readonly (readonly { name: string; op: string; value: string }[])[]): string {
  const groups = selectors.map((g) => JSON.stringify([...new Set(g.map((m) => JSON.stringify([m.name, m.op, m.value])))].sort()));
  return JSON.stringify([...new Set(groups)].sort());
}

/**
 * Teams that share a group or user, set different headers (tenants) and grant
 * different selectors: the default policy denies their common members
 * (policies/lbac/decision.rego, conflicting_teams), since one request's
 * selectors would apply in both tenants.
 */
function teamTenantConflicts(teams: GatewayConfig['policyData']['teams']): string[] {
  const out: string[] = [];
  const names = Object.keys(teams).sort();
  for (const [i, a] of names.entries()) {
    for (const b of names.slice(i + 1)) {
      const ta = teams[a]!;
      const tb = teams[b]!;
      const shared = [...ta.groups.filter((g) => tb.groups.includes(g)).map((g) => `group ${JSON.stringify(g)}`), ...ta.users.filter((u) => tb.users.includes(u)).map((u) => `user ${JSON.stringify(u)}`)];
      // Only where both grant the same upstream do they meet in one decision.
      const meet = ta.upstreams.includes('*') || tb.upstreams.includes('*') || ta.upstreams.some((u) => tb.upstreams.includes(u));
      if (shared.length === 0 || !meet || headerSet(ta.headers) === headerSet(tb.headers) || selectorSet(ta.selectors) === selectorSet(tb.selectors)) continue;
      out.push(
        `teams ${a} and ${b} share ${shared.join(', ')} but set different headers (tenants) and different selectors: requests of their common members are denied (one request's selectors would apply in both tenants) unless they name one team with X-Lbac-Team (e.g. one Grafana datasource per team).`,
      );
    }
  }
  return out;
}
