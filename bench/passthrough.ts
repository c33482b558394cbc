// The floor: a minimal Node pass-through proxy (Fastify + @fastify/reply-from,
// the same stack as the gateway) with no identity, policy or rewriting.
//   node bench/passthrough.ts PORT UPSTREAM_URL
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const port = Number(process.argv[2]);
const upstream = process.argv[3];
if (!upstream) throw new Error('usage: passthrough.ts PORT UPSTREAM_URL');

const app = Fastify({ logger: false });
await app.register(replyFrom, { base: upstream, disableRequestLogging: true, undici: { connections: 128, pipelining: 1 } });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`passthrough listening on ${port}\n`);
// A clean exit on SIGTERM, so `--cpu-prof` can write its profile.
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
