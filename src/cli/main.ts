import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { GatewayError, isGatewayError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import type { SupportedLanguage } from '../rewrite/index.ts';
import { VERSION } from '../version.ts';

// Commands import what they need lazily: `rewrite` must not pay for loading Fastify.

const HELP = `lbac-gateway ${VERSION} — label-based access control for Prometheus, Loki and Tempo

Usage:
  lbac-gateway serve [--config FILE] [--workers N|auto]
  lbac-gateway rewrite --lang promql|logql|traceql --matcher 'ns=~"a|b"' [--matcher …] 'QUERY'
  lbac-gateway rewrite --lang … (--matcher … | --policy FILE) --jsonl    # stdin: one JSON string per line
  lbac-gateway policy eval --input FILE [--policy FILE.wasm | --bundle FILE.tar.gz [--verification-key PEM [--verification-key-id ID] [--signing-alg RS256] [--scope S]]] [--data FILE] [--config FILE [--provider N]]
  lbac-gateway check-config [FILE | --config FILE]

Commands:
  serve          start the gateway (default config: ./lbac-gateway.yaml or $LBAC_CONFIG)
  rewrite        print QUERY with every selector carrying the matchers (several --matcher = one AND-group;
                 --policy takes a decision JSON whose "selectors" is a DNF list of groups).
                 --jsonl: one output record per input line, in order: {"query": …} or {"error": …}
                 (also for an empty line or one that is not valid UTF-8); exit 1 if any line failed
  policy eval    evaluate the policy for an input JSON and print the validated decision (the input's
                 subject as the gateway hands it over: groups and sub with the providers' prefixes;
                 --provider N takes it as identity.providers[N] of --config yields it and prefixes it so;
                 --verification-key and its options check the signature of the --bundle)
  check-config   validate a config file, the one serve would read by default (exit 1 with file, line and key on error)

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
  // Validated as a --policy file is (RE2 regexes, bounds): not every rewriter checks regexes itself,
  // and a query with a regex the backend refuses is no successful rewrite.
  const group = matchers.flatMap((m) => parseMatchers(lang, m));
  try {
    return validateDecision({ allow: true, selectors: [group] }).selectors;
  } catch (e) {
    throw new GatewayError('bad_query', `--matcher: ${errorMessage(e)}`, { cause: e });
  }
}

async function cmdRewrite(args: string[], io: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { lang: { type: 'string' }, matcher: { type: 'string', multiple: true }, policy: { type: 'string' }, jsonl: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    io.out(HELP);
    return 0;
  }
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
    // Record N answers line N (jsonl-lines.ts); every line is answered before the exit status says whether any failed.
    const { inputLines } = await import('./jsonl-lines.ts');
    let failed = 0;
    for await (const line of inputLines(process.stdin)) {
      let result: { query: string } | { error: string };
      if ('error' in line) {
        result = line;
      } else {
        try {
          const q: unknown = JSON.parse(line.text);
          if (typeof q !== 'string') throw new GatewayError('bad_query', 'each line must be a JSON string');
          result = { query: rewriter.rewrite(q, policy) };
        } catch (e) {
          result = { error: errorMessage(e) };
        }
      }
      if ('error' in result) failed++;
      io.out(JSON.stringify(result));
    }
    return failed > 0 ? 1 : 0;
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
    options: {
      input: { type: 'string' },
      policy: { type: 'string' },
      bundle: { type: 'string' },
      data: { type: 'string' },
      config: { type: 'string' },
      'verification-key': { type: 'string' },
      'verification-key-id': { type: 'string' },
      'signing-alg': { type: 'string' },
      scope: { type: 'string' },
      provider: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    io.out(HELP);
    return 0;
  }
  const usage =
    'usage: lbac-gateway policy eval --input FILE [--policy FILE.wasm | --bundle FILE.tar.gz [--verification-key PEM [--verification-key-id ID] [--signing-alg RS256] [--scope S]]] [--data FILE] [--config FILE [--provider N]]';
  // The key and its options only apply to a --bundle (and the options only with the key): ignoring them
  // silently would let a user believe a signature was checked.
  const keyOptions = (['verification-key-id', 'signing-alg', 'scope'] as const).filter((o) => values[o] !== undefined);
  if (values.bundle === undefined && (values['verification-key'] !== undefined || keyOptions.length > 0)) {
    const given = [...(values['verification-key'] !== undefined ? ['verification-key'] : []), ...keyOptions].map((o) => `--${o}`).join(', ');
    io.err(`policy eval: ${given} without --bundle: give the bundle as --bundle FILE.tar.gz to check its signature\n${usage}`);
    return 2;
  }
  if (values['verification-key'] === undefined && keyOptions.length > 0) {
    io.err(`policy eval: ${keyOptions.map((o) => `--${o}`).join(', ')} without --verification-key PEM (they go with the key)\n${usage}`);
    return 2;
  }
  if (positionals[0] !== 'eval' || values.input === undefined || (values.policy !== undefined && values.bundle !== undefined) || (values.provider !== undefined && values.config === undefined)) {
    io.err(usage);
    return 2;
  }
  try {
    const { loadConfigFile, DEFAULT_POLICY_WASM } = await import('../config/load.ts');
    const { PolicyEngine } = await import('../policy/engine.ts');
    let input: unknown = JSON.parse(await readFile(values.input, 'utf8'));
    const config = values.config === undefined ? undefined : await loadConfigFile(values.config);
    if (values.provider !== undefined && config !== undefined) {
      const { subjectAsProviderYields } = await import('./policy-input.ts');
      input = subjectAsProviderYields(input, config.identity.providers, values.provider);
      io.err(`policy eval: subject as identity.providers[${values.provider}] yields it: ${JSON.stringify((input as { subject: unknown }).subject)}`);
    }
    let data: Record<string, unknown> = config === undefined ? {} : { lbac: config.policyData };
    if (values.data !== undefined) data = JSON.parse(await readFile(values.data, 'utf8')) as Record<string, unknown>;
    const entrypoint = config?.policy.entrypoint;
    const file = values.bundle ?? values.policy ?? config?.policyWasm ?? DEFAULT_POLICY_WASM;
    const bytes = await readFile(file).catch((e: unknown) => {
      throw new GatewayError('policy_unavailable', `cannot read ${file}: ${errorMessage(e)}`);
    });
    const { loadBundle, looksLikeBundle } = await import('../policy/bundle.ts');
    let engine;
    if (values.bundle !== undefined || looksLikeBundle(bytes)) {
      // A bundle: its data merged with --data / the config's team data; signature checked when a key is given.
      const { prepareVerification } = await import('../policy/bundle-signature.ts');
      type Alg = Parameters<typeof prepareVerification>[0]['keys'][number]['algorithm'];
      let verification;
      if (values['verification-key'] !== undefined) {
        verification = prepareVerification({
          keys: [{ keyid: values['verification-key-id'] ?? 'default', algorithm: (values['signing-alg'] ?? 'RS256') as Alg, publicKey: await readFile(values['verification-key'], 'utf8') }],
          keyid: values['verification-key-id'],
          scope: values.scope,
        });
      } else if (config?.policy.bundle?.signing !== undefined) {
        const signing = config.policy.bundle.signing;
        const keys = await Promise.all(signing.keys.map(async (k) => ({ keyid: k.keyid, algorithm: k.algorithm, scope: k.scope, publicKey: k.publicKey ?? (await readFile(k.publicKeyFile!, 'utf8')) })));
        verification = prepareVerification({ keys, keyid: signing.keyid, scope: signing.scope, excludeFiles: signing.excludeFiles });
      }
      const loaded = await loadBundle(bytes, { configData: data, verification, ...(entrypoint === undefined ? {} : { entrypoint }) });
      io.err(`policy eval: bundle ${file}: revision ${loaded.revision}${loaded.signedBy === undefined ? ' (signature not checked)' : `, signature verified (key ${loaded.signedBy})`}`);
      engine = loaded.engine;
    } else {
      engine = await PolicyEngine.fromBytes(bytes, data, entrypoint === undefined ? {} : { entrypoint });
    }
    const decision = engine.evaluate(input as Parameters<typeof engine.evaluate>[0]);
    io.out(JSON.stringify(decision, null, 2));
    return 0;
  } catch (e) {
    io.err(`policy eval: ${errorMessage(e)}`);
    return 1;
  }
}

async function cmdCheckConfig(args: string[], io: Out): Promise<number> {
  // The file as serve takes it (--config/-c, else $LBAC_CONFIG, else ./lbac-gateway.yaml), or as a positional argument.
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help === true) {
    io.out(HELP);
    return 0;
  }
  if (positionals.length > 1 || (positionals.length === 1 && values.config !== undefined)) {
    io.err('usage: lbac-gateway check-config [FILE | --config FILE]');
    return 2;
  }
  const file = positionals[0] ?? values.config ?? process.env['LBAC_CONFIG'] ?? 'lbac-gateway.yaml';
  try {
    const { loadConfigFile } = await import('../config/load.ts');
    const { PolicyEngine } = await import('../policy/engine.ts');
    const { configWarnings } = await import('../config/warnings.ts');
    const config = await loadConfigFile(file);
    // Also prove the policy loads and decides with this data.
    await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
    // And read the files only `serve` reads: the identity sources' local files (a provider reached
    // over the network is not contacted), the listener's TLS files, the bundle's keys and TLS files;
    // and look at the audit file serve appends to.
    for (const p of config.identity.providers) {
      if (p.type === 'jwt' && p.jwksFile !== undefined) await (await import('../identity/jwt.ts')).JwtVerifier.create(p);
      if (p.type === 'introspection') await (await import('../identity/introspection.ts')).IntrospectionSource.clientSecret(p);
    }
    if (config.server.tls !== undefined) (await import('../server/tls.ts')).httpsOptions(config.server.tls, config.server.requestTimeoutMs);
    // The audit file serve appends to: looked at, never created or opened.
    const auditNote = await (await import('../server/plugins/audit.ts')).checkAuditFile(config.audit, file);
    if (config.policy.bundle !== undefined) {
      const { BundleClient } = await import('../policy/bundle-client.ts');
      const { PolicyHolder } = await import('../policy/holder.ts');
      const { pino } = await import('pino');
      const client = await BundleClient.create({ config: config.policy.bundle, holder: new PolicyHolder(), entrypoint: config.policy.entrypoint, configData: { lbac: config.policyData }, logger: pino({ level: 'silent' }) });
      await client.stop();
    }
    for (const w of [...configWarnings(config), ...(auditNote !== undefined ? [auditNote] : [])]) io.err(`${file}: warning: ${w}`);
    io.out(`${file}: OK (${config.upstreams.length} upstream(s), ${Object.keys(config.policyData.teams).length} team(s))`);
    return 0;
  } catch (e) {
    io.err(isGatewayError(e) ? e.message : `${file}: ${errorMessage(e)}`);
    return 1;
  }
}

async function cmdServe(args: string[], io: Out): Promise<number> {
  // SIGHUP is handled from the first line: its default action would kill a process still
  // loading. One that arrives while the gateway starts is kept and run once its runtime exists
  // (a cluster primary forwards reloads itself once its workers run; see cluster.ts).
  let hupWhileStarting = false;
  let reload = (): void => {
    hupWhileStarting = true;
  };
  const onHup = () => reload();
  process.on('SIGHUP', onHup);
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, workers: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help === true) {
    process.off('SIGHUP', onHup);
    io.out(HELP);
    return 0;
  }
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
  const { default: cluster } = await import('node:cluster');
  const { resolveWorkers, superviseWorkers, untilNoSiblingListens } = await import('./cluster.ts');
  const flag = values.workers;
  if (flag !== undefined && flag !== 'auto' && !/^[1-9][0-9]*$/.test(flag)) {
    io.err(`serve: --workers must be a positive number or "auto" (got ${JSON.stringify(flag)})`);
    return 2;
  }
  const workers = resolveWorkers(flag === undefined ? config.server.workers : flag === 'auto' ? 'auto' : Number(flag));
  if (workers > 1 && cluster.isPrimary) {
    // On a pipe or socket, the workers' output and the primary's own log go through one relay (whole lines).
    const { StdoutRelay, stdoutNeedsRelay } = await import('./stdout-relay.ts');
    const stdout = stdoutNeedsRelay() ? new StdoutRelay() : undefined;
    const primaryLogger = stdout === undefined ? logger : createLogger(config.server.logLevel, stdout.destination);
    // The primary owns the admin listener: metrics aggregated over all workers, readiness of all.
    const adminListen = config.server.adminListen;
    let admin: import('fastify').FastifyInstance | undefined;
    if (adminListen !== undefined) {
      const { buildClusterAdminApp } = await import('../server/cluster-admin.ts');
      const { splitHostPort } = await import('../server/admin.ts');
      admin = await buildClusterAdminApp(primaryLogger.child({ component: 'admin' }), () => workers);
      const adminUrl = await admin.listen(splitHostPort(adminListen));
      primaryLogger.info({ url: adminUrl, workers }, 'admin listener (metrics of all workers) started');
    }
    // Workers read the config themselves, after any reload asked for so far.
    process.off('SIGHUP', onHup);
    const code = await superviseWorkers(workers, (msg, extra) => primaryLogger.info({ ...extra }, msg), stdout);
    await admin?.close();
    return code;
  }
  let gw: Awaited<ReturnType<typeof startGateway>>;
  try {
    gw = await startGateway(config, logger, {
      admin: cluster.isWorker ? 'cluster-worker' : 'own',
      // A replacement worker waits for a policy (bundle mode) while its siblings serve; the first ones
      // listen at once and answer 503 until a bundle arrives, as a single process does.
      waitForPolicy: cluster.isWorker && process.env['LBAC_SIBLINGS_SERVING'] === '1',
      // …and listens anyway once no sibling listens (the primary tells it; cluster.ts).
      stopWaitingForPolicy: untilNoSiblingListens,
      // From here a SIGHUP reloads, also while a replacement worker waits for its first bundle.
      onRuntime: (runtime) => {
        reload = () => void runtime.reload('SIGHUP');
        if (hupWhileStarting) reload();
      },
    });
  } catch (e) {
    reload = () => undefined;
    // A worker's IPC channel to the primary would keep it alive: close it, so the worker exits
    // with the status below and the primary sees the failure.
    if (cluster.isWorker) cluster.worker?.disconnect();
    throw e;
  }
  const ok = await new Promise<boolean>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: stop waiting for in-flight requests.
        logger.warn({ signal }, 'second signal: exiting without waiting for in-flight requests');
        resolve(false);
        return;
      }
      stopping = true;
      // A reload now would rebuild what is being shut down.
      reload = () => undefined;
      logger.info({ signal, shutdownTimeoutMs: gw.runtime.config.server.shutdownTimeoutMs }, 'shutting down: draining in-flight requests');
      gw.shutdown().then(resolve, () => resolve(false));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    // Announced once the stop signals are handled: a supervisor (or test) that stops the process as soon
    // as it reads this line gets a graceful stop, not the default action of a signal nobody handles yet.
    logger.info({ url: gw.url, adminUrl: gw.adminUrl ?? null }, 'lbac-gateway listening');
  });
  process.off('SIGHUP', onHup);
  if (!ok) {
    logger.error('shutdown did not finish in time; exiting with requests still in flight');
    process.exit(1);
  }
  logger.info('stopped');
  // A cluster worker's IPC channel would keep it alive: let go of it.
  if (cluster.isWorker) process.disconnect?.();
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
