// The mirror's config: defaults from the one settings table, every problem at
// once, sync mode's and the arbiter's settings read and checked.
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
      syncTimeoutMs: 2000,
      syncPolicy: 'block',
      syncSocket: '/var/lib/volley/mirror/sync.sock',
      leaseTtlMs: 10000,
    });
    expect(c.arbiter).toBeUndefined();
    expect(c.promoteCommand).toBeUndefined();
  });

  it('reads sync mode, both arbiters and the promote command', () => {
    const c = parseMirrorConfig(`${MINIMAL}mode: sync\nsync_policy: degrade\nsync_timeout: 500ms\narbiter: { file: lease.json }\npromote_command: [systemctl, start, volley-mta]\n`, '/srv/pair/m.yaml');
    expect(c).toMatchObject({ mode: 'sync', syncPolicy: 'degrade', syncTimeoutMs: 500, arbiter: { kind: 'file', path: '/srv/pair/lease.json' }, promoteCommand: ['systemctl', 'start', 'volley-mta'] });
    const s3 = parseMirrorConfig(`${MINIMAL}arbiter: { s3: { bucket: b, key: ha/prod-mta-a-1.json, region: eu-west-1 } }\n`, 'm.yaml');
    expect(s3.arbiter).toEqual({ kind: 's3', bucket: 'b', key: 'ha/prod-mta-a-1.json', region: 'eu-west-1', endpoint: undefined });
  });

  it('reads where the local MTA\'s admin API is and its token file (fencing, switchover)', () => {
    const defaults = parseMirrorConfig(MINIMAL, '/etc/volley/mirror.yaml');
    expect(defaults.mtaAdmin).toEqual({ address: '127.0.0.1', port: 8025 });
    expect(defaults.mtaAdminTokenFile).toBeUndefined();
    const c = parseMirrorConfig(`${MINIMAL}mta_admin: 127.0.0.1:9025\nmta_admin_token_file: admin.token\n`, '/srv/pair/m.yaml');
    expect(c).toMatchObject({ mtaAdmin: { address: '127.0.0.1', port: 9025 }, mtaAdminTokenFile: '/srv/pair/admin.token' });
    expect(() => parseMirrorConfig(`${MINIMAL}mta_admin: here\n`, 'm.yaml')).toThrow(/mta_admin: expected address:port/);
  });

  it('resolves relative paths against the config file', () => {
    const c = parseMirrorConfig(MINIMAL.replace('/etc/volley/mirror.secret', 'mirror.secret'), '/srv/pair/mirror.yaml');
    expect(c.secretFile).toBe('/srv/pair/mirror.secret');
  });

  it('reports every problem at once', () => {
    const text = `${MINIMAL}mode: mirrored\nsync_policy: wait\narbiter: { s3: { bucket: b } }\npromote_command: systemctl start\nresync_rate: fast\nbogus: 1\n`;
    let message = '';
    try {
      parseMirrorConfig(text, 'm.yaml');
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ECONFIG');
      message = (err as Error).message;
    }
    expect(message).toContain('mode: one of async, sync');
    expect(message).toContain('sync_policy: one of block, degrade');
    expect(message).toContain('arbiter.s3: bucket and key are required');
    expect(message).toContain('promote_command: a list of strings');
    expect(message).toContain('resync_rate:');
    expect(message).toContain('bogus: unknown setting');
  });

  it('requires the persistent path, the peer, TLS and a way to check the peer', () => {
    expect(() => parseMirrorConfig('listen: 127.0.0.1:1\n', 'm.yaml')).toThrow(/persistent_path: required[\s\S]*peer: required[\s\S]*tls: required[\s\S]*peer_fingerprint or peer_ca/);
  });
});
