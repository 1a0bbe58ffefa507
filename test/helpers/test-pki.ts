// Certificates for TLS tests, made with the openssl command line: a CA, and
// leaves it issues for given names (or self-signed, or already expired). Real
// X.509 from a tool independent of the code under test, so a DANE or verify
// check is judged against what a real MX would present.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCert {
  name: string;
  key: Buffer;
  /** PEM. */
  cert: Buffer;
  /** The certificate in DER (for TLSA data). */
  der: Buffer;
  keyPath: string;
  certPath: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function read(dir: string, name: string): TestCert {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.crt`);
  const cert = readFileSync(certPath);
  const der = Buffer.from(
    cert
      .toString()
      .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
      .replace(/\s+/g, ''),
    'base64',
  );
  return { name, key: readFileSync(keyPath), cert, der, keyPath, certPath };
}

/** A CA (basicConstraints CA:TRUE, from openssl's v3_ca section) named `name` under `dir`. */
export function makeCa(dir: string, name = 'ca'): TestCert {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=Volley Test ${name}`, '-days', '30'], dir);
  return read(dir, name);
}

/**
 * A leaf for `names` (subjectAltName DNS entries), issued by `ca`, or
 * self-signed without one. `days: -1` makes one that expired yesterday.
 */
export function makeLeaf(dir: string, name: string, names: string[], options: { ca?: TestCert; days?: number } = {}): TestCert {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\n`);
  const days = String(options.days ?? 30);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${names[0]}`], dir);
  if (options.ca) openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', options.ca.certPath, '-CAkey', options.ca.keyPath, '-days', days, '-extfile', ext, '-out', `${name}.crt`], dir);
  else openssl(['x509', '-req', '-in', `${name}.csr`, '-key', `${name}.key`, '-days', days, '-extfile', ext, '-out', `${name}.crt`], dir);
  return read(dir, name);
}

/** The TLSA association data openssl computes for a certificate: selector 0 full cert, 1 SPKI; matching 0, 1 (SHA-256), 2 (SHA-512). */
export function tlsaData(cert: TestCert, selector: 0 | 1, matchingType: 0 | 1 | 2): string {
  const spkiBase64 = (): string => execFileSync('openssl', ['x509', '-in', cert.certPath, '-noout', '-pubkey']).toString().replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  const selected = selector === 0 ? cert.der : Buffer.from(spkiBase64(), 'base64');
  if (matchingType === 0) return selected.toString('hex');
  const dgst = execFileSync('openssl', ['dgst', matchingType === 1 ? '-sha256' : '-sha512', '-r'], { input: selected }).toString();
  return dgst.split(' ')[0].trim();
}
