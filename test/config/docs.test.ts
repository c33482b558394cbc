import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { toolPath } from '../../e2e/harness/tools.ts';
import { generate } from '../../scripts/gen-config-docs.ts';
import { loadConfigFile } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema.ts';
import { buildPolicyData } from '../../src/config/teams.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const DOCS = join(ROOT, 'docs');
const doc = (name: string): string => readFileSync(join(DOCS, name), 'utf8');

/** The fenced blocks of one language in a Markdown text, with the line each starts on. */
function fenced(text: string, lang: string): { line: number; body: string }[] {
  const blocks: { line: number; body: string }[] = [];
  const re = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```', 'gm');
  for (let m = re.exec(text); m !== null; m = re.exec(text)) blocks.push({ line: text.slice(0, m.index).split('\n').length, body: m[1]! });
  return blocks;
}

/** The first fenced block of `lang` after `heading`. */
function blockAfter(text: string, heading: string, lang: string): string {
  const at = text.indexOf(heading);
  expect(at, `"${heading}" is in the doc`).toBeGreaterThanOrEqual(0);
  const block = fenced(text.slice(at), lang)[0];
  expect(block, `a ${lang} block follows "${heading}"`).toBeDefined();
  return block!.body;
}

describe('docs/configuration.md', () => {
  it('its key reference is generated from the current schema (run: node scripts/gen-config-docs.ts)', () => {
    expect(doc('configuration.md')).toContain(generate());
  });
});

describe('the YAML examples in docs/*.md', () => {
  // Not the gateway's config: Grafana datasource provisioning and the Helm chart's values.
  const OTHER_FORMATS = new Set(['grafana.md', 'deploy.md']);
  // Fragments are checked on top of the smallest complete config; provider list items
  // (`    - type: …`) go under identity.providers.
  const base = (): Record<string, unknown> => ({
    upstreams: [{ name: 'prometheus', kind: 'prometheus', url: 'http://127.0.0.1:9090' }],
    identity: { providers: [{ type: 'jwt', jwksUrl: 'https://idp.example.com/jwks', issuer: 'https://idp.example.com', audience: 'lbac-gateway' }] },
  });
  // The identity docs write a hash's salt and digest as placeholders; this is a real one's shape.
  const HASH = 'scrypt$32768$8$1$GBIbBUfXcT46FPd8aRG-DA$0DJEk7XeJz1CMxtH6O5cZh3P_cG2Ka4ZSB_cIEkBXI0';
  const examples = readdirSync(DOCS)
    .filter((f) => f.endsWith('.md') && !OTHER_FORMATS.has(f))
    .flatMap((f) => fenced(doc(f), 'yaml').map((b) => ({ where: `docs/${f}:${b.line}`, body: b.body })));

  it('are found', () => {
    expect(examples.length).toBeGreaterThanOrEqual(15);
  });

  for (const { where, body } of examples) {
    it(`${where} is a valid config (fragment)`, () => {
      const text = body.replace(/scrypt\$32768\$8\$1\$(?:<salt>\$<hash>|…\$…)/g, HASH);
      const fragment = /^\s+- type:/.test(text)
        ? { identity: { providers: parse(text.replace(/^ {4}/gm, '')) as unknown } }
        : (parse(text) as Record<string, unknown>);
      const result = configSchema.safeParse({ ...base(), ...fragment });
      expect(result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([]);
      if (result.success) buildPolicyData(result.data);
    });
  }
});

describe('docs/policies.md', () => {
  const text = doc('policies.md');
  const exampleInput = (): Parameters<PolicyEngine['evaluate']>[0] => JSON.parse(blockAfter(text, 'Input (`input`):', 'json')) as Parameters<PolicyEngine['evaluate']>[0];
  const exampleOutput = (): unknown => JSON.parse(blockAfter(text, 'Output of the entrypoint', 'json'));
  const teams = async () => ({ lbac: (await loadConfigFile(join(ROOT, 'examples', 'gateway.yaml'))).policyData });

  it("the contract's example input gets the example output (default policy, examples/gateway.yaml's teams)", async () => {
    const engine = await PolicyEngine.fromFile(join(ROOT, 'wasm', 'policy.wasm'), await teams());
    expect(engine.evaluate(exampleInput())).toEqual(exampleOutput());
  });

  it('"Using your own policy": the opa build and tar commands work as written and give a policy.wasm that decides alike', async () => {
    const opa = toolPath('opa'); // throws, naming `make tools`, when it is missing
    const commands = blockAfter(text, '## Using your own policy', 'sh')
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trim())
      .filter((l) => l !== '');
    expect(commands.map((c) => c.split(' ')[0])).toEqual(['opa', 'tar']);
    const dir = mkdtempSync(join(tmpdir(), 'lbac-docs-policy-'));
    try {
      cpSync(join(ROOT, 'policies'), join(dir, 'policies'), { recursive: true });
      for (const c of commands) {
        execFileSync('bash', ['-euo', 'pipefail', '-c', c], {
          cwd: dir,
          env: { ...process.env, PATH: `${dirname(opa)}${delimiter}${process.env['PATH'] ?? ''}` },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      }
      const engine = await PolicyEngine.fromFile(join(dir, 'policy.wasm'), await teams());
      expect(engine.evaluate(exampleInput())).toEqual(exampleOutput());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
