// The DNSSEC fixture itself, checked with Debian's own tools rather than our
// DNS client: tlsaFor agrees with openssl's digest of a certificate, and the
// world's three states are what dig sees through unbound (ad flag, SERVFAIL
// with EDE 6, no ad), so a lookup test that passes is not a fixture that lies.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDnssec, tlsaFor } from './dnssec';
import { tempDir } from './tmp';

const dir = tempDir('volley-dnssec-test-');

function sh(cmd: string): string {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
}

describe('tlsaFor', () => {
  it('gives the SPKI and full-certificate digests openssl gives', () => {
    const key = join(dir, 'k.pem');
    const crt = join(dir, 'c.pem');
    sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${key} -out ${crt} -subj /CN=mx1.dane.test -days 2 2>/dev/null`);
    const pem = sh(`cat ${crt}`);
    const spki256 = sh(`openssl x509 -in ${crt} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -hex`).trim().split(' ').pop();
    const cert512 = sh(`openssl x509 -in ${crt} -outform DER | openssl dgst -sha512 -hex`).trim().split(' ').pop();
    expect(tlsaFor(pem)).toBe(`3 1 1 ${spki256}`);
    expect(tlsaFor(pem, 2, 0, 2)).toBe(`2 0 2 ${cert512}`);
    sh(`openssl x509 -in ${crt} -outform DER -out ${join(dir, 'c.der')}`);
    expect(tlsaFor(pem, 3, 0, 0)).toBe(`3 0 0 ${readFileSync(join(dir, 'c.der')).toString('hex')}`);
  });
});

describe('startDnssec', () => {
  it('serves SECURE, BOGUS and INSECURE answers through unbound, and stops both servers', async () => {
    const world = await startDnssec({
      signed: ['good A 127.0.0.1'],
      bogus: [{ signed: 'bad A 127.0.0.1', served: 'bad A 127.0.0.2' }],
      insecure: ['plain A 127.0.0.3'],
    });
    const [host, port] = world.resolver.split(':');
    const dig = (name: string): string => sh(`dig +dnssec +tries=1 +time=2 -p ${port} @${host} ${name} A`);
    expect(dig('good.dane.test')).toMatch(/flags: qr rd ra ad;/);
    expect(dig('bad.dane.test')).toMatch(/status: SERVFAIL[\s\S]*EDE: 6 \(DNSSEC Bogus\)/);
    const plain = dig('plain.insecure.dane.test');
    expect(plain).toMatch(/status: NOERROR/);
    expect(plain).toMatch(/flags: qr rd ra;/);
    // the authority serves the forged value: only validation tells it apart
    const [ahost, aport] = world.authority.split(':');
    expect(sh(`dig +short -p ${aport} @${ahost} bad.dane.test A`).trim()).toBe('127.0.0.2');
    await world.stop();
    expect(spawnSync('bash', ['-c', `dig +tries=1 +time=1 -p ${port} @${host} good.dane.test A`], { encoding: 'utf8' }).stdout).toMatch(/no servers could be reached|connection refused/);
  });
});

