// Test PKI made with the openssl CLI: CAs, a server certificate for
// 127.0.0.1/localhost and client certificates with chosen subjects and SANs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
  /** PEM contents. */
  certPem: string;
  keyPem: string;
}

export interface TestPki {
  dir: string;
  ca: CertFiles;
  /** Issues a certificate signed by this CA. */
  issue(name: string, opts: { subject: string; san?: string[]; serverAuth?: boolean; days?: number }): CertFiles;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function files(dir: string, name: string): CertFiles {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}

/** A fresh CA (EC P-256) in its own temp dir. `subject` like "/CN=Test CA". */
export function createTestPki(subject: string, dir: string = mkdtempSync(join(tmpdir(), 'lbac-pki-'))): TestPki {
  const tag = subject.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase();
  const caName = `ca-${tag}`;
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${caName}.key`], dir);
  openssl(['req', '-x509', '-new', '-key', `${caName}.key`, '-sha256', '-days', '2', '-subj', subject, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `${caName}.crt`], dir);
  const ca = files(dir, caName);
  return {
    dir,
    ca,
    issue(name, opts) {
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
      openssl(['req', '-new', '-key', `${name}.key`, '-subj', opts.subject, '-out', `${name}.csr`], dir);
      const ext = [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature',
        `extendedKeyUsage=${opts.serverAuth === true ? 'serverAuth' : 'clientAuth'}`,
        ...(opts.san !== undefined && opts.san.length > 0 ? [`subjectAltName=${opts.san.join(',')}`] : []),
      ];
      writeFileSync(join(dir, `${name}.ext`), `${ext.join('\n')}\n`);
      openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', String(opts.days ?? 1), '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
      return files(dir, name);
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
