import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { VolleyError } from './errors';
import type { TlsFiles } from './config/types';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

/**
 * The certificate and key a listener serves: the configured files, or for a
 * local run a self-signed pair made once and kept under the persistent path so
 * that clients which pinned it keep working across restarts.
 */
export async function loadTls(files: TlsFiles | undefined, persistentPath: string, hostname: string): Promise<TlsMaterial> {
  if (files) {
    try {
      return { key: readFileSync(files.key), cert: readFileSync(files.cert) };
    } catch (err) {
      throw new VolleyError('ETLSFILES', `cannot read TLS files: ${(err as Error).message}`, { cause: err });
    }
  }
  const dir = join(persistentPath, 'tls');
  const keyPath = join(dir, 'self-signed.key');
  const certPath = join(dir, 'self-signed.crt');
  if (!existsSync(keyPath) || !existsSync(certPath)) {
    const pems = await generate([{ name: 'commonName', value: hostname }], {
      notAfterDate: new Date(Date.now() + 825 * 86_400_000),
      keySize: 2048,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: hostname }, { type: 7, ip: '127.0.0.1' }] }],
    });
    mkdirSync(dir, { recursive: true });
    writeFileSync(keyPath, pems.private, { mode: 0o600 });
    writeFileSync(certPath, pems.cert);
  }
  return { key: readFileSync(keyPath), cert: readFileSync(certPath) };
}
