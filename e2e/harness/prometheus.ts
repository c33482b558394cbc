// A real Prometheus seeded with deterministic data.
//
// The OpenMetrics text is turned into TSDB blocks with
// `promtool tsdb create-blocks-from openmetrics` BEFORE Prometheus starts, so
// the blocks are loaded when the TSDB opens and are queryable as soon as
// /-/ready answers (no restart or compaction needed). There are no scrape
// configs, so the only series are the seeded ones. `global.query_log_file`
// records every PromQL query the engine executed (query, query_range, rule
// evaluation), one JSON object per line, written before the HTTP response is
// sent. /api/v1/format_query and /api/v1/parse_query need no feature flag.
//
// LBAC_E2E_MODE=containers runs the same steps in the official prom/prometheus
// image (containers.ts) on a bind-mounted work dir: same handle, same files.
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';
import { runCommand, startProcess } from './process.ts';
import type { ExitInfo } from './process.ts';
import { CONTAINER_WORK, e2eMode, requireContainerRuntime } from './mode.ts';
import { toolPath } from './tools.ts';

export interface StartPrometheusOptions {
  /** OpenMetrics text (every sample with a timestamp, ending in `# EOF`), e.g. buildTeamsOpenMetrics(). */
  openMetrics: string;
  /** Extra command-line flags, e.g. ['--enable-feature=promql-experimental-functions']. */
  extraArgs?: readonly string[];
  /** Rule files to load: file name → YAML content (for /api/v1/rules and /alerts tests). */
  ruleFiles?: Readonly<Record<string, string>>;
  /** Rule evaluation interval (global.evaluation_interval). Default 15s. */
  evaluationInterval?: string;
  /** Directory for config, data and query log. Its previous contents are removed. Default: a fresh temp dir, deleted on stop(). */
  workDir?: string;
  /** --storage.tsdb.retention.time. Default 3650d (retention counts from the newest block, not the wall clock). */
  retention?: string;
  /** Default 60 000 ms. */
  readyTimeoutMs?: number;
  /** Where Prometheus's own stdout/stderr go. Default: a file under logDir(). */
  logFile?: string;
  /** Scrape these `host:port` targets every second (job "scraped"), e.g. for /api/v1/metadata, which comes from scrapes only. */
  scrapeTargets?: readonly string[];
}

/** One line of the Prometheus query log. */
export interface QueryLogEntry {
  time?: string;
  params: { query: string; start?: string; end?: string; step?: number };
  error?: string;
  httpRequest?: { clientIP?: string; method?: string; path?: string };
  ruleGroup?: { file?: string; name?: string };
  stats?: unknown;
  [key: string]: unknown;
}

export interface PrometheusInstance {
  /** e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  workDir: string;
  dataDir: string;
  configFile: string;
  queryLogFile: string;
  logFile: string;
  /** The Prometheus process id (local mode); reading it throws in containers mode. */
  pid: number;
  /** Last lines of Prometheus's own log. */
  tail(lines?: number): string;
  /** Resolves when the Prometheus process exits (for any reason). */
  exited: Promise<ExitInfo>;
  /** Stops Prometheus; deletes a temp workDir (unless LBAC_E2E_KEEP_TMP=1). */
  stop(): Promise<void>;
  /** Every PromQL string the engine executed, oldest first. */
  queriesSeen(): Promise<string[]>;
  /** The parsed query log. */
  queryLog(): Promise<QueryLogEntry[]>;
  /** Empties the query log (Prometheus appends, so later queries keep being recorded). */
  clearQueryLog(): void;
}

const PORT_ATTEMPTS = 3;

/** Reads a Prometheus query log file (a partially written last line is ignored). */
export function readQueryLog(file: string): QueryLogEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: QueryLogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const entry = JSON.parse(line) as QueryLogEntry;
      if (entry !== null && typeof entry === 'object' && typeof entry.params?.query === 'string') out.push(entry);
    } catch {
      // partial line being written
    }
  }
  return out;
}

export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusInstance> {
  // Containers mode: fail here, before anything is written, when no engine answers.
  const inContainer = e2eMode() === 'containers';
  if (inContainer) await requireContainerRuntime();
  const ownsWorkDir = opts.workDir === undefined;
  const workDir = opts.workDir !== undefined ? resolve(opts.workDir) : await mkdtemp(join(tmpdir(), 'lbac-prometheus-'));
  if (!ownsWorkDir) {
    rmSync(workDir, { recursive: true, force: true });
  }
  mkdirSync(workDir, { recursive: true });
  const dataDir = join(workDir, 'data');
  const configFile = join(workDir, 'prometheus.yml');
  const queryLogFile = join(workDir, 'query.log');
  const seedFile = join(workDir, 'seed.om');
  /** A path under workDir as Prometheus sees it (the bind mount in containers mode). */
  const seen = (file: string): string => (inContainer ? `${CONTAINER_WORK}/${relative(workDir, file)}` : file);
  const removeWorkDir = (): void => {
    if (ownsWorkDir && process.env['LBAC_E2E_KEEP_TMP'] !== '1') rmSync(workDir, { recursive: true, force: true });
  };

  const prometheus = inContainer ? '' : toolPath('prometheus');
  const promtool = inContainer ? '' : toolPath('promtool');

  writeFileSync(seedFile, opts.openMetrics);
  const ruleFileNames: string[] = [];
  for (const [name, content] of Object.entries(opts.ruleFiles ?? {})) {
    const file = join(workDir, name);
    writeFileSync(file, content);
    ruleFileNames.push(seen(file));
  }
  const config: Record<string, unknown> = {
    global: {
      query_log_file: seen(queryLogFile),
      evaluation_interval: opts.evaluationInterval ?? '15s',
    },
  };
  if (ruleFileNames.length > 0) config['rule_files'] = ruleFileNames;
  if (opts.scrapeTargets !== undefined && opts.scrapeTargets.length > 0) {
    config['scrape_configs'] = [{ job_name: 'scraped', scrape_interval: '1s', static_configs: [{ targets: [...opts.scrapeTargets] }] }];
  }
  writeFileSync(configFile, stringify(config));

  const instance = (proc: { url: string; logFile: string; pid: () => number; exited: Promise<ExitInfo>; tail: (lines?: number) => string; stop: () => Promise<void> }): PrometheusInstance => ({
    url: proc.url,
    workDir,
    dataDir,
    configFile,
    queryLogFile,
    logFile: proc.logFile,
    get pid() {
      return proc.pid();
    },
    exited: proc.exited,
    tail: proc.tail,
    stop: async () => {
      await proc.stop();
      removeWorkDir();
    },
    queryLog: async () => readQueryLog(queryLogFile),
    queriesSeen: async () => readQueryLog(queryLogFile).map((e) => e.params.query),
    clearQueryLog: () => {
      try {
        truncateSync(queryLogFile, 0);
      } catch {
        // not created yet
      }
    },
  });

  if (inContainer) {
    try {
      const { startPrometheusContainer } = await import('./containers.ts');
      const c = await startPrometheusContainer({
        workDir,
        extraArgs: opts.extraArgs ?? [],
        retention: opts.retention ?? '3650d',
        readyTimeoutMs: opts.readyTimeoutMs ?? 60_000,
        ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
      });
      return instance({
        ...c,
        pid: () => {
          throw new Error('Prometheus runs in a container (LBAC_E2E_MODE=containers): there is no host pid to signal');
        },
      });
    } catch (err) {
      removeWorkDir();
      throw err;
    }
  }

  await runCommand(promtool, ['tsdb', 'create-blocks-from', 'openmetrics', '--quiet', seedFile, dataDir]);

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    try {
      const proc = await startProcess({
        name: 'prometheus',
        cmd: prometheus,
        args: [
          `--config.file=${configFile}`,
          `--storage.tsdb.path=${dataDir}`,
          `--web.listen-address=127.0.0.1:${port}`,
          `--storage.tsdb.retention.time=${opts.retention ?? '3650d'}`,
          ...(opts.extraArgs ?? []),
        ],
        cwd: workDir,
        readyUrl: `${url}/-/ready`,
        readyTimeoutMs: opts.readyTimeoutMs ?? 60_000,
        ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
      });
      return instance({ url, logFile: proc.logFile, pid: () => proc.pid, exited: proc.exited, tail: proc.tail, stop: proc.stop });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (attempt < PORT_ATTEMPTS && /address already in use/i.test(msg)) continue;
      removeWorkDir();
      throw err;
    }
  }
}

/** A Prometheus-style API answer. */
export interface PromApiResponse<T = unknown> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
  warnings?: string[];
  infos?: string[];
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/**
 * GET <baseUrl><path>?<params> and parse the JSON body (any status). `baseUrl`
 * may be Prometheus itself or the gateway's mount, e.g. `${gw}/prometheus`.
 */
export async function promGet<T = unknown>(
  baseUrl: string,
  path: string,
  params: Readonly<Record<string, string | readonly string[]>> = {},
  headers: Readonly<Record<string, string>> = {},
): Promise<{ status: number; body: PromApiResponse<T> }> {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (typeof v === 'string') qs.append(k, v);
    else for (const item of v) qs.append(k, item);
  }
  const q = qs.toString();
  const res = await fetch(`${baseUrl}${path}${q === '' ? '' : `?${q}`}`, { headers: { ...headers } });
  const text = await res.text();
  let body: PromApiResponse<T>;
  try {
    body = JSON.parse(text) as PromApiResponse<T>;
  } catch {
    body = { status: 'error', errorType: 'non_json', error: text };
  }
  return { status: res.status, body };
}

/** An instant query; `time` in epoch seconds. Throws unless HTTP 200 with a vector result. */
export async function instantQuery(
  baseUrl: string,
  query: string,
  opts: { time?: number; headers?: Readonly<Record<string, string>> } = {},
): Promise<PromSample[]> {
  const params: Record<string, string> = { query };
  if (opts.time !== undefined) params['time'] = String(opts.time);
  const { status, body } = await promGet<{ resultType: string; result: PromSample[] }>(
    baseUrl,
    '/api/v1/query',
    params,
    opts.headers,
  );
  if (status !== 200 || body.status !== 'success' || body.data === undefined) {
    throw new Error(`query ${JSON.stringify(query)} failed: HTTP ${status} ${JSON.stringify(body)}`);
  }
  if (body.data.resultType !== 'vector') {
    throw new Error(`query ${JSON.stringify(query)} returned ${body.data.resultType}, not a vector`);
  }
  return body.data.result;
}

/** A matcher as Prometheus' /api/v1/parse_query reports it (`type`: `=`, `!=`, `=~`, `!~`; the value unescaped). */
export interface PromAstMatcher {
  readonly name: string;
  readonly type: string;
  readonly value: string;
}

/** Every selector (vector and matrix) in a /api/v1/parse_query AST: its node type and matchers. */
export function astSelectors(node: unknown, out: { type: string; matchers: PromAstMatcher[] }[] = []): { type: string; matchers: PromAstMatcher[] }[] {
  if (Array.isArray(node)) for (const x of node) astSelectors(x, out);
  else if (node !== null && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (Array.isArray(o['matchers'])) out.push({ type: String(o['type']), matchers: o['matchers'] as PromAstMatcher[] });
    for (const [k, v] of Object.entries(o)) if (k !== 'matchers') astSelectors(v, out);
  }
  return out;
}
