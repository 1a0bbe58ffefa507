// Two mirror daemons in this process on loopback, over the real TLS + HMAC
// link: replication and catch-up status, /readyz by role, promotion refused
// when not caught up, and a higher epoch demoting (and fencing) a primary.
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startMirrorAdmin } from '../../../runtime/mirror/admin';
import { parseMirrorConfig, type MirrorConfig } from '../../../runtime/mirror/config';
import { MirrorDaemon } from '../../../runtime/mirror/daemon';
import { guardCatchUp, markForQuarantine } from '../../../runtime/mirror/quarantine';
import { readState, writeState } from '../../../runtime/mirror/state';
import { RecordType, frame, messagePayload } from '../../../runtime/shared/spool-record';
import { fakeMta } from '../../helpers/fake-mta';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const SEGMENT = 'spool/p0/000000000001.seg';
/** One spool message record, as an MTA appends it. */
const spoolRecord = (id: string): Buffer => Buffer.concat(frame(RecordType.Message, messagePayload(JSON.stringify({ id, from: 'a@x.test', to: ['r@x.test'], received: 1, via: 'smtp', size: 5 }), Buffer.from('hello'))));

const base = tempDir('volley-mirror-daemon-');
let tls: ProxyTls;
let secretFile: string;
const running: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  tls = await proxyTls(base);
  secretFile = join(base, 'mirror.secret');
  writeFileSync(secretFile, newSecret());
});

afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

interface Node {
  daemon: MirrorDaemon;
  root: string;
  admin: string;
  fenced: number[];
  log: () => string;
}

async function node(name: string, ports: { self: number; peer: number }, extra = '', hooks: { now?: () => number } = {}): Promise<Node> {
  const root = join(base, name);
  mkdirSync(root, { recursive: true });
  const config: MirrorConfig = parseMirrorConfig(
    `persistent_path: ${root}\nlisten: 127.0.0.1:${ports.self}\npeer: 127.0.0.1:${ports.peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: ${secretFile}\nadmin_listen: 127.0.0.1:0\npoll_interval: 20ms\nreconnect_interval: 50ms\n${extra}`,
    join(base, `${name}.yaml`),
  );
  const fenced: number[] = [];
  const { logger, text } = captureLogger();
  const daemon = new MirrorDaemon(config, logger, { ...hooks, fence: (pid) => fenced.push(pid) });
  await daemon.start();
  const admin = await startMirrorAdmin(daemon);
  running.push({ stop: async () => void (await Promise.all([daemon.stop(), admin.close()])) });
  return { daemon, root, admin: `http://127.0.0.1:${admin.port}`, fenced, log: text };
}

async function pair(label: string): Promise<{ a: Node; b: Node }> {
  const pa = await getFreePort();
  const pb = await getFreePort();
  writeState(join(base, `${label}-a`), { role: 'primary', epoch: 1, caughtUp: false });
  const b = await node(`${label}-b`, { self: pb, peer: pa });
  const a = await node(`${label}-a`, { self: pa, peer: pb });
  return { a, b };
}

describe('MirrorDaemon pair', () => {
  it('replicates the primary\'s path, reports caught up on both ends, and answers /readyz by role', async () => {
    const { a, b } = await pair('rep');
    mkdirSync(join(a.root, 'spool', 'p0'), { recursive: true });
    writeFileSync(join(a.root, 'spool/p0/000000000001.seg'), 'first record\n');
    writeFileSync(join(a.root, 'node-id'), 'node-a\n');
    await waitUntil(() => b.daemon.status().caught_up && a.daemon.status().caught_up, 10_000, () => JSON.stringify([a.daemon.status(), b.daemon.status()]));
    expect(readFileSync(join(b.root, 'spool/p0/000000000001.seg'), 'utf8')).toBe('first record\n');
    expect(readState(b.root)).toEqual({ role: 'secondary', epoch: 1, caughtUp: true, outdated: false, peerOutdated: false });

    appendFileSync(join(a.root, 'spool/p0/000000000001.seg'), 'second record\n');
    await waitUntil(() => { try { return readFileSync(join(b.root, 'spool/p0/000000000001.seg'), 'utf8').endsWith('second record\n'); } catch { return false; } }, 10_000);
    await waitUntil(() => a.daemon.status().lag_bytes === 0, 10_000);
    // The secondary shows the lag the primary measured, down to 0 once idle.
    await waitUntil(() => b.daemon.status().lag_bytes === 0 && b.daemon.status().lag_seconds === 0, 10_000, () => JSON.stringify(b.daemon.status()));

    expect((await fetch(`${a.admin}/readyz`)).status).toBe(200);
    expect((await fetch(`${b.admin}/readyz`)).status).toBe(503);
    const metrics = await (await fetch(`${a.admin}/metrics`)).text();
    expect(metrics).toMatch(/volley_mirror_primary 1/);
    expect(metrics).toMatch(/volley_mirror_lag_bytes 0/);
    const status = (await (await fetch(`${b.admin}/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ role: 'secondary', epoch: 1, peer_connected: true, caught_up: true, mode: 'async' });
  });

  it('refuses to promote a secondary that never caught up, unless forced', async () => {
    const lone = await node('lone', { self: await getFreePort(), peer: await getFreePort() });
    const refused = await fetch(`${lone.admin}/promote`, { method: 'POST' });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'ENOTCAUGHTUP' });
    expect(readState(lone.root).role).toBe('secondary');
    const forced = await fetch(`${lone.admin}/promote?force=1`, { method: 'POST' });
    expect(await forced.json()).toEqual({ role: 'primary', epoch: 1 });
    expect(readState(lone.root)).toMatchObject({ role: 'primary', epoch: 1 });
    expect((await fetch(`${lone.admin}/readyz`)).status).toBe(200);
  });

  it('a caught-up secondary whose copy of a segment is being rewritten (the primary found its history diverged) is not caught up until the copy ends', async () => {
    const pa = await getFreePort();
    const pb = await getFreePort();
    writeState(join(base, 'rewrite-a'), { role: 'primary', epoch: 1, caughtUp: false });
    const b = await node('rewrite-b', { self: pb, peer: pa });
    // The primary's clock stands still: a full copy gets its first second of resync_rate and no more (until it moves).
    let clock = Date.UTC(2026, 11, 5);
    let frozen = true;
    const a = await node('rewrite-a', { self: pa, peer: pb }, 'resync_rate: 1000\n', { now: () => (frozen ? clock : (clock += 10_000)) });
    const seg = 'spool/p0/000000000001.seg';
    mkdirSync(join(a.root, 'spool', 'p0'), { recursive: true });
    writeFileSync(join(a.root, seg), Buffer.alloc(10_000, 1));
    await waitUntil(() => b.daemon.status().caught_up && a.daemon.status().caught_up, 10_000, () => JSON.stringify([a.daemon.status(), b.daemon.status()]));
    // A byte the secondary already holds changes on the primary: the segment is copied again from 0.
    const now = readFileSync(join(a.root, seg));
    now[9_999] = 2;
    writeFileSync(join(a.root, seg), now);
    await waitUntil(() => statSync(join(b.root, seg)).size === 1_000, 10_000, () => String(statSync(join(b.root, seg)).size));
    // Its copy is cut to 1,000 of 10,000 bytes: a promotion now would serve a queue missing the rest.
    expect(b.daemon.status().caught_up).toBe(false);
    expect(readState(b.root).caughtUp).toBe(false);
    await expect(b.daemon.promote(false)).rejects.toMatchObject({ code: 'ENOTCAUGHTUP' });
    // The clock moves: the copy ends, and the primary says so again.
    frozen = false;
    await waitUntil(() => b.daemon.status().caught_up, 10_000, () => JSON.stringify([a.daemon.status(), b.daemon.status()]));
    expect(readFileSync(join(b.root, seg)).equals(now)).toBe(true);
  });

  it('a promoted secondary\'s higher epoch demotes the old primary at once, fences its MTA, and replication turns around', async () => {
    const { a, b } = await pair('epoch');
    writeFileSync(join(a.root, 'mta.lock'), '424242\n');
    writeFileSync(join(a.root, 'node-id'), 'node-a\n');
    await waitUntil(() => b.daemon.status().caught_up, 10_000, () => JSON.stringify(b.daemon.status()));
    expect((await fetch(`${b.admin}/promote`, { method: 'POST' })).status).toBe(200);
    await waitUntil(() => a.daemon.state.role === 'secondary', 10_000, () => a.log());
    expect(readState(a.root)).toMatchObject({ role: 'secondary', epoch: 2 });
    expect(a.fenced).toEqual([424242]);
    expect((await fetch(`${a.admin}/readyz`)).status).toBe(503);
    // The new primary's changes now flow to the old one.
    writeFileSync(join(b.root, 'node-id'), 'node-b-after-promotion\n');
    await waitUntil(() => { try { return readFileSync(join(a.root, 'node-id'), 'utf8') === 'node-b-after-promotion\n'; } catch { return false; } }, 10_000, () => a.log());
    expect(b.daemon.state).toMatchObject({ role: 'primary', epoch: 2 });
  });

  it('a primary that finds a peer of a higher epoch steps down before sending anything', async () => {
    const pa = await getFreePort();
    const pb = await getFreePort();
    writeState(join(base, 'stale-a'), { role: 'primary', epoch: 3, caughtUp: false });
    writeState(join(base, 'stale-b'), { role: 'primary', epoch: 5, caughtUp: true });
    mkdirSync(join(base, 'stale-a', 'spool', 'p0'), { recursive: true });
    writeFileSync(join(base, 'stale-a', 'spool/p0/000000000001.seg'), 'only the stale primary has this');
    const b = await node('stale-b', { self: pb, peer: pa });
    const a = await node('stale-a', { self: pa, peer: pb });
    await waitUntil(() => a.daemon.state.role === 'secondary', 10_000, () => a.log());
    expect(readState(a.root)).toMatchObject({ role: 'secondary', epoch: 5 });
    expect(b.daemon.state).toMatchObject({ role: 'primary', epoch: 5 });
    // What only the stale primary had is not simply deleted by its catch-up: it is set aside and reported.
    await waitUntil(() => a.daemon.status().quarantine.reports.length === 1 && !a.daemon.status().quarantine.pending, 10_000, () => a.log());
    expect(existsSync(join(a.root, 'spool/p0/000000000001.seg'))).toBe(false);
    const [report] = a.daemon.status().quarantine.reports;
    expect(report.dir).toMatch(/\/mirror\/quarantine\/3-\d{8}T\d{6}Z$/);
    expect(readFileSync(join(report.dir, 'spool/p0/000000000001.seg'), 'utf8')).toBe('only the stale primary has this');
  });

  it('a node promoted before its catch-up finished files what it had set aside so far', async () => {
    const root = join(base, 'midway');
    mkdirSync(join(root, 'spool', 'p0'), { recursive: true });
    writeFileSync(join(root, 'spool/p0/000000000001.seg'), 'its own tail');
    markForQuarantine(root, 1, 'test', 0);
    await guardCatchUp(root, 1, undefined, captureLogger().logger, 0)!.protect([{ op: 'truncate', path: 'spool/p0/000000000001.seg', size: 0 }]);
    const lone = await node('midway', { self: await getFreePort(), peer: await getFreePort() });
    expect(lone.daemon.status().quarantine.pending).toBe(true);
    expect(await (await fetch(`${lone.admin}/metrics`)).text()).toMatch(/^volley_mirror_quarantine_pending 1$/m);
    lone.daemon.promote(true);
    await waitUntil(() => lone.daemon.status().quarantine.reports.length === 1, 10_000, () => lone.log());
    expect(lone.daemon.status().quarantine).toMatchObject({ pending: false, reports: [{ bytes: 'its own tail'.length }] });
    const metrics = await (await fetch(`${lone.admin}/metrics`)).text();
    expect(metrics).toMatch(/^volley_mirror_quarantine_pending 0$/m);
    expect(metrics).toMatch(/^volley_mirror_quarantined_messages 0$/m); // its own tail was no spool record: bytes, no message id
  });

  it('a secondary refuses to mirror into a persistent path an MTA is running on, until it stops', async () => {
    const label = 'busy';
    mkdirSync(join(base, `${label}-b`), { recursive: true });
    // A live `volley mta` process on the secondary's path holding its lock.
    const mta = await fakeMta(base, join(base, `${label}-b`));
    writeFileSync(join(base, `${label}-b`, 'mta.lock'), `${mta.pid}\n`);
    const { a, b } = await pair(label);
    writeFileSync(join(a.root, 'node-id'), 'node-a\n');
    await waitUntil(() => /an MTA is running on this secondary/.test(b.log()), 10_000, () => b.log());
    expect(existsSync(join(b.root, 'node-id'))).toBe(false);
    expect(b.daemon.status().caught_up).toBe(false);
    await mta.stop();
    rmSync(join(b.root, 'mta.lock'));
    await waitUntil(() => b.daemon.status().caught_up, 10_000, () => b.log());
    expect(readFileSync(join(b.root, 'node-id'), 'utf8')).toBe('node-a\n');
  });

  /** A caught-up pair whose primary holds one spool segment with message m-shared; `record` makes more. */
  const pairWithSegment = async (name: string) => {
    const { a, b } = await pair(name);
    mkdirSync(join(a.root, 'spool', 'p0'), { recursive: true });
    writeFileSync(join(a.root, SEGMENT), spoolRecord('m-shared'));
    await waitUntil(() => b.daemon.status().caught_up && a.daemon.status().caught_up, 10_000, () => JSON.stringify([a.daemon.status(), b.daemon.status()]));
    return { a, b, seg: SEGMENT, record: spoolRecord };
  };

  it('an MTA that ran on the secondary and stopped: what it wrote there is quarantined by the next catch-up, not overwritten', async () => {
    const { a, b, seg, record } = await pairWithSegment('rogue');
    // An MTA starts on the secondary's path (this test's own pid holds its lock), accepts a message, and stops cleanly (its lock goes).
    writeFileSync(join(b.root, 'mta.lock'), `${process.pid}\n`);
    appendFileSync(join(b.root, seg), record('m-only-on-b'));
    rmSync(join(b.root, 'mta.lock'));
    // The primary accepts mail too: its next batch writes where the secondary's own message is.
    appendFileSync(join(a.root, seg), record('m-on-a'));
    await waitUntil(() => b.daemon.status().quarantine.messages > 0, 10_000, () => `${JSON.stringify(b.daemon.status())} ${b.log()}`);
    expect(b.daemon.status().quarantine).toMatchObject({ pending: false, messages: 1 });
    await waitUntil(() => b.daemon.status().caught_up && a.daemon.status().caught_up && a.daemon.status().lag_bytes === 0, 10_000);
    expect(readFileSync(join(b.root, seg)).equals(readFileSync(join(a.root, seg)))).toBe(true);
    const reports = readdirSync(join(b.root, 'mirror', 'quarantine'));
    expect(reports).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(b.root, 'mirror', 'quarantine', reports[0], 'quarantine.json'), 'utf8'))).toMatchObject({ messages: ['m-only-on-b'] });
  });

  it('an MTA found running on the secondary when the primary reconnects: once it stops, what it wrote is quarantined by the catch-up, not overwritten', async () => {
    const { a, b, seg, record } = await pairWithSegment('rogue-at-accept');
    // An MTA starts on the secondary's path (a live `volley mta` process holds its lock) and accepts a message; the link drops and the primary dials again.
    const mta = await fakeMta(base, b.root);
    writeFileSync(join(b.root, 'mta.lock'), `${mta.pid}\n`);
    appendFileSync(join(b.root, seg), record('m-only-on-b'));
    (b.daemon as unknown as { inbound?: { close(): void } }).inbound?.close();
    await waitUntil(() => /an MTA is running on this secondary/.test(b.log()), 10_000, () => b.log());
    // It stops cleanly (its lock goes); the primary has taken more mail meanwhile.
    await mta.stop();
    rmSync(join(b.root, 'mta.lock'));
    appendFileSync(join(a.root, seg), Buffer.concat([record('m-on-a'), record('m-on-a-2')]));
    await waitUntil(() => b.daemon.status().caught_up && b.daemon.status().quarantine.reports.length > 0, 10_000, () => `${JSON.stringify(b.daemon.status())} ${b.log()}`);
    expect(b.daemon.status().quarantine).toMatchObject({ pending: false, messages: 1 });
    const reports = readdirSync(join(b.root, 'mirror', 'quarantine'));
    expect(JSON.parse(readFileSync(join(b.root, 'mirror', 'quarantine', reports[0], 'quarantine.json'), 'utf8'))).toMatchObject({ messages: ['m-only-on-b'] });
  });

  it('names the mirror\'s secret when it is missing or short', () => {
    const config = parseMirrorConfig(`persistent_path: ${base}/nosecret\npeer: 127.0.0.1:1\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: AA\nsecret_file: short.secret\n`, join(base, 'nosecret.yaml'));
    writeFileSync(join(base, 'short.secret'), 'too short');
    expect(() => new MirrorDaemon(config, captureLogger().logger)).toThrow(/^mirror secret_file \(or VOLLEY_MIRROR_SECRET\): the secret has 9 bytes; it needs at least 32$/);
  });
});

describe('MirrorDaemon with an arbiter', () => {
  it('a primary holding the lease fences its MTA when its mirror stops (the lease will lapse); without a lease it does not', async () => {
    const arbiter = join(base, 'stop-arbiter');
    mkdirSync(arbiter);
    const withLease = await node('stop-lease', { self: await getFreePort(), peer: await getFreePort() }, `name: stop-lease\narbiter: { file: ${join(arbiter, 'lease.json')} }\nlease_ttl: 30s\n`);
    writeFileSync(join(withLease.root, 'mta.lock'), '434343\n');
    expect((await fetch(`${withLease.admin}/promote?force=1`, { method: 'POST' })).status).toBe(200);
    await waitUntil(() => withLease.daemon.status().lease?.held_until !== undefined, 10_000, () => JSON.stringify(withLease.daemon.status()));
    await withLease.daemon.stop();
    expect(withLease.fenced).toEqual([434343]);

    const noLease = await node('stop-nolease', { self: await getFreePort(), peer: await getFreePort() });
    writeFileSync(join(noLease.root, 'mta.lock'), '434344\n');
    expect((await fetch(`${noLease.admin}/promote?force=1`, { method: 'POST' })).status).toBe(200);
    await noLease.daemon.stop();
    expect(noLease.fenced).toEqual([]);
  });
});

describe('MirrorDaemon switchover', () => {
  it('is refused on a primary whose secondary is not connected, and on a secondary; nothing is stopped', async () => {
    const lone = await node('sw-lone', { self: await getFreePort(), peer: await getFreePort() });
    writeFileSync(join(lone.root, 'mta.lock'), '454545\n');
    const onSecondary = await fetch(`${lone.admin}/switchover`, { method: 'POST' });
    expect(onSecondary.status).toBe(409);
    expect(await onSecondary.json()).toMatchObject({ code: 'ENOTPRIMARY' });
    expect((await fetch(`${lone.admin}/promote?force=1`, { method: 'POST' })).status).toBe(200);
    const alone = await fetch(`${lone.admin}/switchover`, { method: 'POST' });
    expect(alone.status).toBe(409);
    expect(await alone.json()).toMatchObject({ code: 'ENOTCAUGHTUP', error: expect.stringContaining('not connected') });
    expect(lone.fenced).toEqual([]);
    expect(readState(lone.root)).toMatchObject({ role: 'primary', epoch: 1 });
    const bad = await fetch(`${lone.admin}/switchover?timeout=soon`, { method: 'POST' });
    expect(bad.status).toBe(400);
  });
});
