import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { Authenticator } from '../identity/authenticator.ts';
import { BundleClient } from '../policy/bundle-client.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { PolicyHolder } from '../policy/holder.ts';
import { buildApp } from './app.ts';

export interface RunningGateway {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** Never log credentials: these paths are censored wherever they appear. */
export const REDACT_PATHS = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-grafana-id"]', 'req.headers["x-id-token"]'];

export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Log the path only: query strings may carry anything a client chose to put there.
      req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
    },
  });
}

export async function createGateway(config: GatewayConfig, logger: Logger = createLogger(config.server.logLevel)): Promise<FastifyInstance> {
  const holder = new PolicyHolder();
  const bundle = config.policy.bundle;
  const configData = { lbac: config.policyData };
  const upstreams = config.upstreams.map((u) => `${u.name}@${u.mount}`);
  let bundleClient: BundleClient | undefined;
  if (bundle === undefined) {
    const [authenticator, engine] = await Promise.all([
      Authenticator.fromConfig(config),
      PolicyEngine.fromFile(config.policyWasm, configData, { entrypoint: config.policy.entrypoint }),
    ]);
    holder.activate(engine, `file:${config.policyWasm}`);
    logger.info({ policy: config.policyWasm, revision: engine.revision, upstreams }, 'policy loaded');
    return buildApp({ config, authenticator, engine: holder, logger });
  }
  // Bundle mode: listen right away, not ready until the persisted or a downloaded bundle is active.
  const [authenticator, client] = await Promise.all([
    Authenticator.fromConfig(config),
    BundleClient.create({ config: bundle, holder, entrypoint: config.policy.entrypoint, configData, logger: logger.child({ component: 'bundle' }) }),
  ]);
  bundleClient = client;
  logger.info({ bundle: client.url, signed: bundle.signing !== undefined, persistDir: bundle.persistDir ?? null, upstreams }, 'policy from bundle service');
  const app = await buildApp({ config, authenticator, engine: holder, logger });
  app.addHook('onClose', async () => bundleClient?.stop());
  await client.start();
  return app;
}

export async function startGateway(config: GatewayConfig, logger?: Logger): Promise<RunningGateway> {
  const app = await createGateway(config, logger);
  const idx = config.server.listen.lastIndexOf(':');
  const host = config.server.listen.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(config.server.listen.slice(idx + 1));
  const url = await app.listen({ host, port });
  return { url, app, close: () => app.close() };
}
