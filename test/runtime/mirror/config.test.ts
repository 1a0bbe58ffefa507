// The mirror's config: defaults from the one settings table, every problem at
// once, and settings of the unbuilt parts (sync mode, arbiter) refused by name.
import { parseMirrorConfig } from '../../../runtime/mirror/config';

const MINIMAL = `
persistent_path: /var/lib/volley
peer: 10.0.1.8:7627
tls: { cert: /etc/volley/mirror.crt, key: /etc/volley/mirror.key }
peer_fingerprint: AB:CD
secret_file: /etc/volley/mirror.secret
`;

describe('parseMirrorConfig', () => {
  it('fills the defaults', () => {
    const c = parseMirrorConfig(MINIMAL, '/etc/volley/mirror.yaml');
    expect(c).toMatchObject({
      persistentPath: '/var/lib/volley',
      peer: { address: '10.0.1.8', port: 7627 },
      listen: { address: '0.0.0.0', port: 7627 },
      adminListen: { address: '127.0.0.1', port: 7628 },
      mode: 'async',
      resyncRateBytes: 50 * 1024 * 1024,
      pollIntervalMs: 50,
      batchMaxBytes: 4 * 1024 * 1024,
      fence: 'stop-mta',
      secretFile: '/etc/volley/mirror.secret',
    });
  });

  it('resolves relative paths against the config file', () => {
    const c = parseMirrorConfig(MINIMAL.replace('/etc/volley/mirror.secret', 'mirror.secret'), '/srv/pair/mirror.yaml');
    expect(c.secretFile).toBe('/srv/pair/mirror.secret');
  });

  it('refuses sync mode and the arbiter by name, and reports every problem at once', () => {
    const text = `${MINIMAL}mode: sync\nsync_timeout: 2s\narbiter: { file: /x }\nresync_rate: fast\nbogus: 1\n`;
    let message = '';
    try {
      parseMirrorConfig(text, 'm.yaml');
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ECONFIG');
      message = (err as Error).message;
    }
    expect(message).toContain('mode: "sync" is not implemented yet');
    expect(message).toContain('sync_timeout: "sync_timeout" is not implemented yet');
    expect(message).toContain('arbiter: "arbiter" is not implemented yet');
    expect(message).toContain('resync_rate:');
    expect(message).toContain('bogus: unknown setting');
  });

  it('requires the persistent path, the peer, TLS and a way to check the peer', () => {
    expect(() => parseMirrorConfig('listen: 127.0.0.1:1\n', 'm.yaml')).toThrow(/persistent_path: required[\s\S]*peer: required[\s\S]*tls: required[\s\S]*peer_fingerprint or peer_ca/);
  });
});
