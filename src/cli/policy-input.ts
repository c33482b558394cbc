/**
 * `policy eval --provider N`: the decision input's subject written as a
 * provider's source answers it (groups and sub without prefixes), put into
 * that provider's namespace the way the server does (SubjectPrefixer, with
 * every other provider's namespace reserved), so a policy author can test
 * "a token of this issuer with these groups" without working out the
 * prefixes. Pure; the CLI reads the files.
 */
import type { ProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { prefixesOf, SubjectPrefixer } from '../identity/prefix.ts';
import type { Subject } from '../policy/decision.ts';
import { isRecord } from '../util/is-record.ts';

/** The input with its subject as providers[`index`] yields it; throws (GatewayError) on a bad index or subject, or a subject that provider may not yield. */
export function subjectAsProviderYields(input: unknown, providers: readonly ProviderConfig[], index: string): unknown {
  if (!/^(0|[1-9][0-9]*)$/.test(index) || Number(index) >= providers.length) {
    throw new GatewayError('config_invalid', `--provider ${JSON.stringify(index)}: the config has identity.providers[0] to [${providers.length - 1}]`);
  }
  if (!isRecord(input) || !isRecord(input['subject'])) throw new GatewayError('policy_error', '--provider: the input has no "subject" object');
  const subject = input['subject'];
  if (typeof subject['sub'] !== 'string') throw new GatewayError('policy_error', '--provider: the input\'s subject has no "sub" string');
  const groups = subject['groups'] ?? [];
  if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) throw new GatewayError('policy_error', '--provider: the input\'s subject "groups" is not a list of strings');
  if (subject['username'] !== undefined && typeof subject['username'] !== 'string') throw new GatewayError('policy_error', '--provider: the input\'s subject "username" is not a string');
  const prefixer = SubjectPrefixer.forProviders(providers.map(prefixesOf))[Number(index)]!;
  // InvalidTokenError (a sub in another provider's usersPrefix namespace): the gateway would answer 401.
  const yielded = prefixer.apply({ ...subject, groups } as unknown as Subject);
  return { ...input, subject: yielded };
}
