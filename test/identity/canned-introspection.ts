// A canned RFC 7662 endpoint for identity tests: answers by token (form field `token`), `{active: false}` for any other.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CannedIntrospection {
  readonly url: string;
  close(): void;
}

export async function startCannedIntrospection(answers: Readonly<Record<string, () => Record<string, unknown>>>): Promise<CannedIntrospection> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token') ?? '';
      res.setHeader('content-type', 'application/json').end(JSON.stringify(answers[token]?.() ?? { active: false }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`, close: () => server.close() };
}
