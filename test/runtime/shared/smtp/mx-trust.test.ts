// mxTrust: the operator's CA file becomes a trust store that verifies an MX
// certificate it issued (over a real TLS handshake on loopback), and a file
// that cannot serve as one is refused with ETLSCAFILE naming the setting.
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, createServer, type SecureContext } from 'node:tls';
import { mxTrust } from '../../../../runtime/shared/smtp/mx-trust';
import { createTestCa } from '../../../helpers/test-ca';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const ca = createTestCa(dir);
const leaf = ca.issue(['mx.trust.test']);

/** Whether a handshake with `secureContext` (or Node's store when undefined) finds the server's chain trusted. */
async function authorized(secureContext: SecureContext | undefined): Promise<boolean> {
  const server = createServer({ key: leaf.key, cert: leaf.cert }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<boolean>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'mx.trust.test', rejectUnauthorized: false, ...(secureContext ? { secureContext } : {}) }, () => {
        resolve(s.authorized);
        s.destroy();
      });
      s.once('error', reject);
    });
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

test("a certificate from the file's CA is trusted; without the file it is not", async () => {
  expect(await authorized(undefined)).toBe(false);
  expect(await authorized(mxTrust(ca.caFile, 'delivery.tls_ca_file'))).toBe(true);
});

test('an unreadable file, or one without a PEM certificate, is refused with ETLSCAFILE and the setting', () => {
  expect(() => mxTrust(join(dir, 'absent.pem'), 'delivery.tls_ca_file')).toThrow(expect.objectContaining({ code: 'ETLSCAFILE', message: expect.stringContaining('delivery.tls_ca_file: cannot read') as string }));
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate\n');
  expect(() => mxTrust(junk, 'mx_tls_ca_file')).toThrow(expect.objectContaining({ code: 'ETLSCAFILE', message: expect.stringContaining('mx_tls_ca_file') as string }));
});
