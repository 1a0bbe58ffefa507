// Mode sync with two mirror daemons in this process over the real link and
// the MTA's barrier client on the primary's sync socket: a barrier resolves
// only once the bytes written before it are on the secondary's disk; a
// secondary answers barriers with a refusal; an outdated secondary refuses
// promotion (EOUTDATED) unless forced, and status shows the sync fields.
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mirrorMetrics } from '../../../runtime/mirror/admin';
import { applyBatch } from '../../../runtime/mirror/apply';
import { parseMirrorConfig } from '../../../runtime/mirror/config';
import { MirrorDaemon } from '../../../runtime/mirror/daemon';
import { readState, writeState } from '../../../runtime/mirror/state';
import { MirrorSyncClient } from '../../../runtime/shared/mirror-sync/client';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const base = tempDir('volley-mirror-sync-mode-');
let tls: ProxyTls;
let secretFile: string;
const closing: (() => unknown)[] = [];

beforeAll(async () => {
  tls = await proxyTls(base);
  secretFile = join(base, 'mirror.secret');
  writeFileSync(secretFile, newSecret());
});
afterEach(async () => {
  for (const c of closing.splice(0)) await c();
});

async function node(name: string, ports: { self: number; peer: number }, extra: string, hooks: ConstructorParameters<typeof MirrorDaemon>[2] = {}): Promise<{ daemon: MirrorDaemon; root: string }> {
  const root = join(base, name);
  mkdirSync(join(root, 'spool', 'p000'), { recursive: true });
  const config = parseMirrorConfig(
    `persistent_path: ${root}\nlisten: 127.0.0.1:${ports.self}\npeer: 127.0.0.1:${ports.peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: ${secretFile}\nadmin_listen: 127.0.0.1:0\npoll_interval: 10s\nreconnect_interval: 50ms\nmode: sync\n${extra}`,
    join(base, `${name}.yaml`),
  );
  const daemon = new MirrorDaemon(config, captureLogger().logger, hooks);
  await daemon.start();
  closing.push(() => daemon.stop());
  return { daemon, root };
}

test('a barrier resolves once what was written before it is on the secondary (no poll wait), and a secondary refuses barriers', async () => {
  const pa = await getFreePort();
  const pb = await getFreePort();
  writeState(join(base, 'bar-a'), { role: 'primary', epoch: 1, caughtUp: false });
  const b = await node('bar-b', { self: pb, peer: pa }, 'sync_timeout: 30s\n');
  const a = await node('bar-a', { self: pa, peer: pb }, 'sync_timeout: 30s\n');
  await waitUntil(() => a.daemon.status().caught_up, 20_000);
  const client = new MirrorSyncClient({ socket: join(a.root, 'mirror', 'sync.sock'), timeoutMs: 40_000 });
  closing.push(() => client.close());
  const seg = join('spool', 'p000', '000000000001.seg');
  for (let i = 0; i < 5; i++) {
    appendFileSync(join(a.root, seg), `record ${i}\n`);
    // The poll interval is 10 s: only the barrier's own scan can bring these bytes over in time for the check below.
    await expect(client.barrier()).resolves.toBe('sync');
    expect(readFileSync(join(b.root, seg), 'utf8')).toBe(readFileSync(join(a.root, seg), 'utf8'));
  }
  expect(a.daemon.status().sync).toMatchObject({ sync_state: 'sync', barriers_answered: 5, barrier_timeouts: 0, outdated: false, peer_outdated: false });
  const metrics = await mirrorMetrics(a.daemon).metrics();
  expect(metrics).toMatch(/^volley_mirror_sync_state\{state="sync"\} 1$/m);
  expect(metrics).toMatch(/^volley_mirror_sync_state\{state="degraded"\} 0$/m);
  expect(metrics).toMatch(/^volley_mirror_barrier_seconds_count 5$/m);
  expect(metrics).toMatch(/^volley_mirror_peer_outdated 0$/m);
  const onSecondary = new MirrorSyncClient({ socket: join(b.root, 'mirror', 'sync.sock'), timeoutMs: 5000 });
  closing.push(() => onSecondary.close());
  await expect(onSecondary.barrier()).rejects.toThrow(/not-primary/);
});

test('an outdated secondary refuses promotion with EOUTDATED unless forced; forced, it is the primary and no longer outdated', async () => {
  const pa = await getFreePort();
  const pb = await getFreePort();
  writeState(join(base, 'out-b'), { role: 'secondary', epoch: 3, caughtUp: true, outdated: true });
  const b = await node('out-b', { self: pb, peer: pa }, 'sync_policy: degrade\n');
  await expect(b.daemon.promote(false)).rejects.toMatchObject({ code: 'EOUTDATED', message: expect.stringContaining('--force') });
  expect(b.daemon.status().sync).toMatchObject({ outdated: true });
  const s = await b.daemon.promote(true);
  expect(s).toMatchObject({ role: 'primary', epoch: 4, outdated: false });
  expect(readState(b.root)).toMatchObject({ role: 'primary', epoch: 4, outdated: false, peerOutdated: false });
});

test('a barrier that arrives while a batch is out gets its batch sent at once, behind it; each is answered only after the ack covering it', async () => {
  const pa = await getFreePort();
  const pb = await getFreePort();
  writeState(join(base, 'pipe-a'), { role: 'primary', epoch: 1, caughtUp: false });
  // The secondary's writes, held by hand once `hold` is set: the primary's batches stay unacknowledged meanwhile.
  let hold = false;
  const held: (() => void)[] = [];
  const apply: typeof applyBatch = async (root, ops, body) => {
    if (hold) await new Promise<void>((resolve) => held.push(resolve));
    await applyBatch(root, ops, body);
  };
  const b = await node('pipe-b', { self: pb, peer: pa }, 'sync_timeout: 30s\n', { apply });
  const a = await node('pipe-a', { self: pa, peer: pb }, 'sync_timeout: 30s\n');
  await waitUntil(() => a.daemon.status().caught_up, 20_000);
  const client = new MirrorSyncClient({ socket: join(a.root, 'mirror', 'sync.sock'), timeoutMs: 40_000 });
  closing.push(() => client.close());
  closing.push(() => held.splice(0).forEach((r) => r()));
  const seg = join('spool', 'p000', '000000000001.seg');
  const answered: string[] = [];
  hold = true;
  appendFileSync(join(a.root, seg), 'first\n');
  const first = client.barrier().then(() => answered.push('first'));
  await waitUntil(() => held.length === 1, 10_000, () => 'the first batch never reached the secondary');
  const sentBefore = a.daemon.status().bytes_sent;
  appendFileSync(join(a.root, seg), 'second\n');
  const second = client.barrier().then(() => answered.push('second'));
  // Sent while the first batch still waits for its ack.
  await waitUntil(() => a.daemon.status().bytes_sent > sentBefore, 10_000, () => `bytes_sent stayed at ${sentBefore}: the second batch waits for the first's ack`);
  expect(answered).toEqual([]);
  held[0]();
  await first;
  await waitUntil(() => held.length === 2, 10_000, () => 'the second batch never reached the secondary');
  // The second batch is not durable on the secondary yet: its barrier still waits.
  expect(answered).toEqual(['first']);
  expect(readFileSync(join(b.root, seg), 'utf8')).toBe('first\n');
  held[1]();
  await second;
  expect(answered).toEqual(['first', 'second']);
  expect(readFileSync(join(b.root, seg), 'utf8')).toBe('first\nsecond\n');
});
