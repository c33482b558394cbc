import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { GatewayError, isGatewayError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import type { SupportedLanguage } from '../rewrite/index.ts';
import { VERSION } from '../version.ts';

// Commands import what they need lazily: `rewrite` must not pay for loading Fastify.

const HELP = `lbac-gateway ${VERSION} — label-based access control for Prometheus, Loki and Tempo

Usage:
  lbac-gateway serve [--config FILE]
  lbac-gateway rewrite --lang promql|logql|traceql --matcher 'ns=~"a|b"' [--matcher …] 'QUERY'
  lbac-gateway rewrite --lang … (--matcher … | --policy FILE) --jsonl    # stdin: one JSON string per line
  lbac-gateway policy eval --input FILE [--policy FILE.wasm] [--data FILE] [--config FILE]
  lbac-gateway check-config FILE

Commands:
  serve          start the gateway (default config: ./lbac-gateway.yaml or $LBAC_CONFIG)
  rewrite        print QUERY with every selector carrying the matchers (several --matcher = one AND-group;
                 --policy takes a decision JSON whose "selectors" is a DNF list of groups)
  policy eval    evaluate the policy for an input JSON and print the validated decision
  check-config   validate a config file (exit 1 with file, line and key on error)

Options:
  -h, --help     this help
  --version      print the version
`;

type Out = { out: (s: string) => void; err: (s: string) => void };
const stdio: Out = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function policyFromFlags(lang: SupportedLanguage, matchers: string[], policyFile: string | undefined): Promise<SelectorPolicy> {
  const { parseMatchers } = await import('../rewrite/index.ts');
  const { validateDecision } = await import('../policy/decision.ts');
  if (policyFile !== undefined) {
    if (matchers.length > 0) throw new GatewayError('bad_query', 'use either --matcher or --policy, not both');
    const raw: unknown = JSON.parse(await readFile(policyFile, 'utf8'));
    const d = validateDecision(Array.isArray(raw) ? raw : { allow: true, ...(raw as object) });
    if (!d.allow || d.selectors.length === 0) throw new GatewayError('bad_query', `policy file has no selectors: ${d.reason}`);
    return d.selectors;
  }
  if (matchers.length === 0) throw new GatewayError('bad_query', 'at least one --matcher (or --policy FILE) is required');
  return [matchers.flatMap((m) => parseMatchers(lang, m))];
}

async function cmdRewrite(args: string[], io: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { lang: { type: 'string' }, matcher: { type: 'string', multiple: true }, policy: { type: 'string' }, jsonl: { type: 'boolean' } },
  });
  const { getRewriter, isSupportedLanguage } = await import('../rewrite/index.ts');
  const lang = values.lang ?? '';
  if (!isSupportedLanguage(lang)) {
    io.err(`rewrite: --lang must be one of promql, logql, traceql (got ${JSON.stringify(lang)})`);
    return 2;
  }
  let policy: SelectorPolicy;
  try {
    policy = await policyFromFlags(lang, values.matcher ?? [], values.policy);
  } catch (e) {
    io.err(`rewrite: ${errorMessage(e)}`);
    return 2;
  }
  const rewriter = getRewriter(lang);
  if (values.jsonl) {
    const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of rl) {
      if (line.trim() === '') continue;
      let result: { query: string } | { error: string };
      try {
        const q: unknown = JSON.parse(line);
        if (typeof q !== 'string') throw new Error('each line must be a JSON string');
        result = { query: rewriter.rewrite(q, policy) };
      } catch (e) {
        result = { error: errorMessage(e) };
      }
      io.out(JSON.stringify(result));
    }
    return 0;
  }
  if (positionals.length !== 1) {
    io.err('rewrite: give exactly one QUERY argument (or --jsonl)');
    return 2;
  }
  try {
    io.out(rewriter.rewrite(positionals[0]!, policy));
    return 0;
  } catch (e) {
    io.err(errorMessage(e));
    return 1;
  }
}

async function cmdPolicyEval(args: string[], io: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { input: { type: 'string' }, policy: { type: 'string' }, data: { type: 'string' }, config: { type: 'string' } },
  });
  if (positionals[0] !== 'eval' || values.input === undefined) {
    io.err('usage: lbac-gateway policy eval --input FILE [--policy FILE.wasm] [--data FILE] [--config FILE]');
    return 2;
  }
  try {
    const { loadConfigFile } = await import('../config/load.ts');
    const { PolicyEngine } = await import('../policy/engine.ts');
    const input: unknown = JSON.parse(await readFile(values.input, 'utf8'));
    const config = values.config === undefined ? undefined : await loadConfigFile(values.config);
    let data: unknown = config === undefined ? {} : { lbac: config.policyData };
    if (values.data !== undefined) data = JSON.parse(await readFile(values.data, 'utf8'));
    const wasm = values.policy ?? config?.policyWasm ?? (await import('../config/load.ts')).DEFAULT_POLICY_WASM;
    if (wasm.endsWith('.tar.gz')) throw new GatewayError('policy_error', 'bundles (.tar.gz) are not supported by policy eval yet; pass the policy.wasm');
    const engine = await PolicyEngine.fromFile(wasm, data, config === undefined ? {} : { entrypoint: config.policy.entrypoint });
    const decision = engine.evaluate(input as Parameters<typeof engine.evaluate>[0]);
    io.out(JSON.stringify(decision, null, 2));
    return 0;
  } catch (e) {
    io.err(`policy eval: ${errorMessage(e)}`);
    return 1;
  }
}

async function cmdCheckConfig(args: string[], io: Out): Promise<number> {
  const file = args[0];
  if (file === undefined) {
    io.err('usage: lbac-gateway check-config FILE');
    return 2;
  }
  try {
    const { loadConfigFile } = await import('../config/load.ts');
    const { PolicyEngine } = await import('../policy/engine.ts');
    const config = await loadConfigFile(file);
    // Also prove the policy loads and decides with this data.
    await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
    io.out(`${file}: OK (${config.upstreams.length} upstream(s), ${Object.keys(config.policyData.teams).length} team(s))`);
    return 0;
  } catch (e) {
    io.err(isGatewayError(e) ? e.message : `${file}: ${errorMessage(e)}`);
    return 1;
  }
}

async function cmdServe(args: string[], io: Out): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const file = values.config ?? process.env['LBAC_CONFIG'] ?? 'lbac-gateway.yaml';
  const { loadConfigFile } = await import('../config/load.ts');
  const { createLogger, startGateway } = await import('../server/index.ts');
  let config;
  try {
    config = await loadConfigFile(file);
  } catch (e) {
    io.err(errorMessage(e));
    return 1;
  }
  const logger = createLogger(config.server.logLevel);
  const gw = await startGateway(config, logger);
  logger.info({ url: gw.url }, 'lbac-gateway listening');
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      gw.close().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}

export async function main(argv: string[], io: Out = stdio): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    // parseArgs' unknown/invalid option errors and anything unexpected: one line, no stack.
    io.err(`lbac-gateway: ${errorMessage(e)}`);
    return 2;
  }
}

async function dispatch(argv: string[], io: Out): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      io.out(HELP);
      return cmd === undefined ? 2 : 0;
    case '--version':
      io.out(VERSION);
      return 0;
    case 'serve':
      return cmdServe(rest, io);
    case 'rewrite':
      return cmdRewrite(rest, io);
    case 'policy':
      return cmdPolicyEval(rest, io);
    case 'check-config':
      return cmdCheckConfig(rest, io);
    default:
      io.err(`unknown command ${JSON.stringify(cmd)}\n\n${HELP}`);
      return 2;
  }
}
