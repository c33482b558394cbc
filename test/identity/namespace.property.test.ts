// Property: with any set of provider prefixes, no provider yields a name inside
// another provider's namespace (a longer prefix that starts with its own), and
// nothing else is taken away: every other group is kept, in order, with its
// provider's prefix; a subject is refused exactly when its prefixed sub lies in
// such a namespace, and its username is dropped exactly when that does.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidTokenError } from '../../src/identity/jwt.ts';
import { SubjectPrefixer, type SubjectPrefixes } from '../../src/identity/prefix.ts';
import type { Subject } from '../../src/policy/decision.ts';

// Prefixes that nest ("p:" ⊂ "p:q:"), overlap without nesting ("p:" vs "pq:"), or stand alone.
const prefix = fc.constantFrom<string | undefined>(undefined, undefined, 'p:', 'p:q:', 'pq:', 'x:', 'p');
// Names that may begin with any of those prefixes, or none.
const name = fc
  .tuple(fc.constantFrom('', '', 'p:', 'q:', 'p:q:', 'pq:', 'x:', 'p'), fc.constantFrom('a', 'b', 'team-a', 'q:c', ':d', ''))
  .map(([a, b]) => a + b)
  .filter((s) => s !== '');
const providers = fc.array(fc.record({ groupsPrefix: prefix, usersPrefix: prefix }), { minLength: 1, maxLength: 4 });
const subject = fc.record({
  sub: name,
  username: fc.option(name, { nil: undefined }),
  groups: fc.array(name, { maxLength: 6 }),
});

/** The longer prefixes of other providers that start with `own`: the namespaces `own`'s provider may not yield names in. */
function reservedFor(own: string | undefined, all: readonly (string | undefined)[]): string[] {
  const mine = own ?? '';
  return all.filter((q): q is string => q !== undefined && q !== mine && q.startsWith(mine));
}
const inside = (n: string, namespaces: readonly string[]) => namespaces.some((q) => n.startsWith(q));

describe('provider prefixes reserve their namespaces (property)', () => {
  it('a provider yields no name in a namespace another provider reserves, and loses nothing else', () => {
    fc.assert(
      fc.property(providers, fc.nat(), subject, (ps, pick, s) => {
        const prefixes: SubjectPrefixes[] = ps;
        const i = pick % ps.length;
        const prefixer = SubjectPrefixer.forProviders(prefixes)[i]!;
        const source: Subject = Object.freeze({
          sub: s.sub,
          ...(s.username !== undefined ? { username: s.username, usernameTrusted: true } : {}),
          groups: Object.freeze([...s.groups]),
          roles: Object.freeze([]),
          auth: 'jwt',
          claims: {},
        });
        const g = ps[i]!.groupsPrefix ?? '';
        const u = ps[i]!.usersPrefix ?? '';
        const groupSpaces = reservedFor(ps[i]!.groupsPrefix, ps.map((p) => p.groupsPrefix));
        const userSpaces = reservedFor(ps[i]!.usersPrefix, ps.map((p) => p.usersPrefix));

        if (inside(u + s.sub, userSpaces)) {
          expect(() => prefixer.apply(source)).toThrow(InvalidTokenError);
          expect(prefixer.peek(source)).toBeUndefined();
          return;
        }
        const out = prefixer.apply(source);
        expect(Object.isFrozen(out)).toBe(true);
        expect(out.sub).toBe(u + s.sub);
        // Exactly the groups outside the reserved namespaces, prefixed, in order.
        expect(out.groups).toEqual(s.groups.map((x) => g + x).filter((x) => !inside(x, groupSpaces)));
        if (s.username === undefined || inside(u + s.username, userSpaces)) {
          expect(out.username).toBeUndefined();
          expect(out.usernameTrusted).toBeUndefined();
        } else {
          expect(out.username).toBe(u + s.username);
          expect(out.usernameTrusted).toBe(true);
        }
        // The same source subject always maps to the same object (caches key on it).
        expect(prefixer.apply(source)).toBe(out);
        // Without prefixes anywhere, the subject is handed on as the source answered it.
        if (ps.every((p) => p.groupsPrefix === undefined && p.usersPrefix === undefined)) expect(out).toBe(source);
      }),
      { numRuns: 2000 },
    );
  });
});
