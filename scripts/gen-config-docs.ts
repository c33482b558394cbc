// Generates the key reference in docs/configuration.md from the zod schema, so
// the docs cannot drift from the code. `node scripts/gen-config-docs.ts` rewrites
// the section between the markers; `--check` exits 1 when it is stale (a unit test runs it).
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.ts';
import { ENV_OVERRIDES } from '../src/config/load.ts';

type Js = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Js>;
  required?: string[];
  items?: Js;
  additionalProperties?: Js | boolean;
  anyOf?: Js[];
  oneOf?: Js[];
  pattern?: string;
};

const BEGIN = '<!-- BEGIN GENERATED: config keys -->';
const END = '<!-- END GENERATED: config keys -->';

function typeOf(s: Js): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${String(e)}\``).join(' \\| ');
  const alts = s.anyOf ?? s.oneOf;
  if (alts?.every((a) => a.properties?.['type']?.const !== undefined)) return `one of: ${alts.map((a) => `\`${String(a.properties!['type']!.const)}\``).join(', ')} (by \`type\`)`;
  if (alts) return alts.map(typeOf).join(' or ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && !s.properties && typeof s.additionalProperties === 'object') return `map of ${typeOf(s.additionalProperties)}`;
  return String(s.type ?? 'any');
}

function rows(s: Js, prefix: string, out: string[]): void {
  const props = s.properties ?? (s.type === 'array' && s.items?.properties ? s.items.properties : undefined);
  const required = new Set((s.type === 'array' ? s.items?.required : s.required) ?? []);
  if (!props) return;
  for (const [key, child] of Object.entries(props)) {
    const path = `${prefix}${key}`;
    const inner = child.type === 'array' && child.items ? child.items : child;
    // Scalars and non-empty lists of scalars (e.g. algorithms, orgs); objects and empty lists say nothing a reader needs.
    const shown = typeof child.default !== 'object' || (Array.isArray(child.default) && child.default.length > 0 && child.default.every((d) => typeof d !== 'object'));
    const def = child.default === undefined || child.default === null || !shown ? '' : `\`${JSON.stringify(child.default)}\``;
    const req = required.has(key) && child.default === undefined ? 'yes' : '';
    const desc = (child.description ?? inner.description ?? '').replace(/\|/g, '\\|');
    out.push(`| \`${path}\` | ${typeOf(child)} | ${req} | ${def} | ${desc} |`);
    const variants = (inner.anyOf ?? inner.oneOf ?? []).filter((v) => v.properties?.['type']?.const !== undefined);
    if (variants.length > 0) {
      // A union discriminated by `type` (identity providers): one block of keys per variant.
      for (const v of variants) rows(v, `${path}${child.type === 'array' ? '[]' : ''}(type=${String(v.properties!['type']!.const)}).`, out);
    } else if (inner.properties) rows(inner, child.type === 'array' ? `${path}[].` : `${path}.`, out);
    else if (typeof inner.additionalProperties === 'object' && inner.additionalProperties.properties) rows(inner.additionalProperties, `${path}.<name>.`, out);
  }
}

export function generate(): string {
  const js = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Js;
  const out = ['| key | type | required | default | meaning |', '|---|---|---|---|---|'];
  rows(js, '', out);
  out.push('', 'Environment overrides (applied after the file, validated like it; an invalid value is reported with the variable\'s name):', '', '| variable | sets |', '|---|---|');
  for (const o of ENV_OVERRIDES) out.push(`| \`${o.env}\` | \`${o.path.join('.')}\` |`);
  return `${BEGIN}\n${out.join('\n')}\n${END}`;
}

const file = new URL('../docs/configuration.md', import.meta.url);
if (import.meta.url === `file://${process.argv[1]}`) {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < 0) throw new Error('docs/configuration.md lacks the generated-section markers');
  const next = text.slice(0, start) + generate() + text.slice(end + END.length);
  if (process.argv.includes('--check')) {
    if (next !== text) {
      console.error('docs/configuration.md is stale: run node scripts/gen-config-docs.ts');
      process.exit(1);
    }
  } else writeFileSync(file, next);
}
