import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { Authenticator } from '../identity/authenticator.ts';
import { PolicyEngine } from '../policy/engine.ts';
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
  const [authenticator, engine] = await Promise.all([
    Authenticator.fromConfig(config),
    PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint }),
  ]);
  logger.info({ policy: config.policyWasm, revision: engine.revision, upstreams: config.upstreams.map((u) => `${u.name}@${u.mount}`) }, 'policy loaded');
  return buildApp({ config, authenticator, engine, logger });
}

export async function startGateway(config: GatewayConfig, logger?: Logger): Promise<RunningGateway> {
  const app = await createGateway(config, logger);
  const idx = config.server.listen.lastIndexOf(':');
  const host = config.server.listen.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(config.server.listen.slice(idx + 1));
  const url = await app.listen({ host, port });
  return { url, app, close: () => app.close() };
}
