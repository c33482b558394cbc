import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import type { ServerTlsConfig } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { fileErrorCode } from '../util/file-error.ts';

function read(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfigError(`cannot read ${file}: ${fileErrorCode(e)}`, { key });
  }
}

/**
 * node:https options for `server.tls`. Client certificates are requested (when
 * clientCA is set) but never required at the TLS layer
 * (`rejectUnauthorized: false`): a missing or unverified certificate reaches
 * the identity layer, which answers 401 in the backend's format; only a
 * certificate whose chain verified against clientCA (`socket.authorized`)
 * identifies anyone (src/identity/mtls.ts).
 *
 * TLS 1.2 renegotiation is refused: on a renegotiated handshake the client can
 * present another certificate, and Node keeps the connection's `authorized`
 * from the first one (a self-signed CN=admin certificate was taken for a
 * verified one). mtls.ts also pins a connection to its first certificate.
 */
export function httpsOptions(tls: ServerTlsConfig, handshakeTimeoutMs: number): ServerOptions {
  const requestCert = tls.requestClientCert ?? tls.clientCA !== undefined;
  return {
    // A connection that never completes its handshake holds a maxConnections slot: as long as a request may
    // take to arrive (server.requestTimeoutMs), not Node's 120 s.
    handshakeTimeout: handshakeTimeoutMs,
    cert: read(tls.cert, 'server.tls.cert'),
    key: read(tls.key, 'server.tls.key'),
    ...(tls.clientCA === undefined ? {} : { ca: read(tls.clientCA, 'server.tls.clientCA') }),
    requestCert,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}
