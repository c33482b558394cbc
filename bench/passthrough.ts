// The floor: a minimal Node pass-through proxy (Fastify + @fastify/reply-from,
// the same stack as the gateway) with no identity, policy or rewriting.
//   node bench/passthrough.ts PORT UPSTREAM_URL [WORKERS]
// WORKERS > 1 runs that many copies under node:cluster, as the gateway's
// `server.workers` does (src/cli/cluster.ts: the primary only supervises and
// shares the listening socket), so a gateway with N workers is compared with
// a floor of N processes, not one.
import cluster from 'node:cluster';
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const port = Number(process.argv[2]);
const upstream = process.argv[3];
const workers = Number(process.argv[4] ?? '1');
if (!upstream || !Number.isInteger(workers) || workers < 1) throw new Error('usage: passthrough.ts PORT UPSTREAM_URL [WORKERS]');

if (workers > 1 && cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) process.stdout.write(`passthrough listening on ${port} (${workers} workers)\n`);
  });
  process.once('SIGTERM', () => {
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 5_000).unref();
  });
} else {
  const app = Fastify({ logger: false });
  await app.register(replyFrom, { base: upstream, disableRequestLogging: true, undici: { connections: 128, pipelining: 1 } });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.all('/*', (req, reply) => reply.from(req.url));
  await app.listen({ host: '127.0.0.1', port });
  if (workers === 1) process.stdout.write(`passthrough listening on ${port}\n`);
  // A clean exit on SIGTERM, so `--cpu-prof` can write its profile.
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
}
