// The `drain` config section: its defaults, and the mistakes it refuses.
import { ConfigError, parseConfig } from '../../../../runtime/shared/config/load';

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, 'bad.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  throw new Error('config was accepted');
}

const base = 'hostname: mta.example\nvmtas: [{ name: v, ip: 192.0.2.1, helo: mta.example }]\npools: [{ name: p, vmtas: [{ name: v }] }]\n';

describe('drain config', () => {
  test('absent: no drain endpoint', () => {
    expect(parseConfig(base).drain).toBeUndefined();
  });

  test('defaults fill in around accept_from', () => {
    expect(parseConfig(`${base}drain: { accept_from: [10.0.0.0/8] }\n`).drain).toEqual({
      listen: { address: '0.0.0.0', port: 8443 },
      tls: undefined,
      secretFile: undefined,
      previousSecretFile: undefined,
      acceptFrom: ['10.0.0.0/8'],
      trustedProxies: [],
      dedupeRetentionMs: 7 * 86_400_000,
      maxBatchBytes: 32 * 1024 * 1024,
    });
  });

  test('every field is read', () => {
    const c = parseConfig(
      `${base}drain:\n  listen: { address: 127.0.0.1, port: 9443 }\n  tls: { cert: /c.pem, key: /k.pem }\n  secret_file: /etc/volley/drain.secret\n  previous_secret_file: /etc/volley/drain.old\n` +
        '  accept_from: [10.1.0.0/16, "fd00::/8"]\n  trusted_proxies: [10.2.0.5]\n  dedupe_retention: 2d\n  max_batch_bytes: 8MB\n',
    );
    expect(c.drain).toEqual({
      listen: { address: '127.0.0.1', port: 9443 },
      tls: { cert: '/c.pem', key: '/k.pem' },
      secretFile: '/etc/volley/drain.secret',
      previousSecretFile: '/etc/volley/drain.old',
      acceptFrom: ['10.1.0.0/16', 'fd00::/8'],
      trustedProxies: ['10.2.0.5'],
      dedupeRetentionMs: 2 * 86_400_000,
      maxBatchBytes: 8 * 1024 * 1024,
    });
  });

  test('bad values are refused with their field', () => {
    expect(issuesOf(`${base}drain: { accept_from: [10.0.0.0/33], trusted_proxies: [nope], dedupe_retention: soon }\n`)).toEqual([
      expect.stringMatching(/^drain\.accept_from\[0\]: .*prefix length/),
      expect.stringMatching(/^drain\.trusted_proxies\[0\]: .*not an IP/),
      expect.stringMatching(/^drain\.dedupe_retention: /),
    ]);
    expect(issuesOf(`${base}drain: { listen: { port: 8443 } }\n`)).toEqual([expect.stringMatching(/^drain: needs accept_from/)]);
    expect(issuesOf(`${base}drain: { accept_from: [10.0.0.0/8], bogus: 1 }\n`)).toEqual([expect.stringContaining('bogus')]);
  });
});
