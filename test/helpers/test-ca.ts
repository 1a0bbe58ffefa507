// A throwaway certificate authority made with openssl, for TLS peers on
// loopback that must be verified as a real one would be (MTA-STS policy
// hosts, TLS-RPT endpoints, MXes): a CA, and leaf certificates for chosen
// DNS names signed by it (or by another CA, for "not trusted" cases).

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  /** The CA certificate's PEM file (what `ca_file` options take). */
  caFile: string;
  caPem: string;
  /** A key and a certificate for `names` (DNS subjectAltNames), signed by this CA. */
  issue(names: string[], options?: { days?: number; label?: string }): { key: string; cert: string };
}

const openssl = (args: string[], cwd: string): void => {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
};

export function createTestCa(dir: string, name = 'Volley Test CA'): TestCa {
  const slug = name.replace(/\W+/g, '-').toLowerCase();
  const caKey = join(dir, `${slug}.key`);
  const caFile = join(dir, `${slug}.crt`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  let serial = 0;
  return {
    dir,
    caFile,
    caPem: readFileSync(caFile, 'utf8'),
    issue(names, options = {}) {
      const base = join(dir, `${slug}-${options.label ?? names[0]}-${++serial}`);
      const ext = `${base}.ext`;
      writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`], dir);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', `${base}.crt`, '-days', String(options.days ?? 7), '-extfile', ext], dir);
      return { key: readFileSync(`${base}.key`, 'utf8'), cert: readFileSync(`${base}.crt`, 'utf8') };
    },
  };
}
