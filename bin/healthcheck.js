#!/usr/bin/env node
// The image's HEALTHCHECK: GET /healthz on the gateway's own port (LBAC_LISTEN) over loopback, in
// plain HTTP, or in HTTPS when server.tls makes that port speak TLS. The certificate is not checked:
// this asks only whether the process answers, and the name in it is not 127.0.0.1's. Exit 0: healthy.
import http from 'node:http';
import https from 'node:https';

const port = Number((process.env.LBAC_LISTEN ?? '127.0.0.1:8080').split(':').pop());

/** true/false: /healthz answered 200 or not; undefined: no HTTP answer at all (a TLS port, nothing listening). */
function healthz(client, options) {
  return new Promise((resolve) => {
    const req = client.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 2000, ...options }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve(undefined));
  });
}

const plain = await healthz(http, {});
const healthy = plain ?? (await healthz(https, { rejectUnauthorized: false }));
process.exit(healthy === true ? 0 : 1);
