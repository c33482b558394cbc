/**
 * The key and secret files a config names that a reload reads again: their
 * paths (watched like the config file) and a digest of their contents (a
 * watched change with the config and these contents unchanged is no reload).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { GatewayConfig } from '../config/load.ts';

/** jwksFile, clientSecretFile, the bundle's publicKeyFile keys. */
export function keyFiles(config: GatewayConfig): string[] {
  const files: string[] = [];
  for (const p of config.identity.providers) {
    if (p.type === 'jwt' && p.jwksFile !== undefined) files.push(p.jwksFile);
    if (p.type === 'introspection' && p.clientSecretFile !== undefined) files.push(p.clientSecretFile);
  }
  for (const k of config.policy.bundle?.signing?.keys ?? []) if (k.publicKeyFile !== undefined) files.push(k.publicKeyFile);
  return files;
}

/** SHA-256 over each key file's path and content (or why it could not be read: that is a state too). */
export async function keyFilesDigest(config: GatewayConfig): Promise<string> {
  const hash = createHash('sha256');
  for (const file of keyFiles(config)) {
    const content = await readFile(file).then(
      (b) => createHash('sha256').update(b).digest('hex'),
      (e: NodeJS.ErrnoException) => `unreadable:${e.code ?? 'error'}`,
    );
    hash.update(JSON.stringify([file, content]));
  }
  return hash.digest('hex');
}
