// Automatic failover with real processes on loopback and the file arbiter:
// two MTAs (the second started when its node is promoted), two `volley
// mirror` daemons, the link between them through a relay the test can
// freeze, and node A's view of the arbiter through a symlink the test can
// break. Both MTAs' SMTP ports are probed all along with a real
// EHLO + MAIL FROM transaction: at no moment do both accept.
//   1. A pure link cut: A still holds (and renews) the lease, so B, cut
//      off, does not promote however long it waits.
//   2. A loses the arbiter: it fences itself (intake stopped over the MTA's
//      admin API, then SIGTERM) before its lease can expire; B takes the
//      expired lease with epoch 2, runs its promote_command, and only then
//      does an MTA accept mail on B. A ends as B's secondary.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN, testConfigYaml } from '../../helpers/config';
import { startFreezableRelay, type FreezableRelay } from '../../helpers/freezable-relay';
import { mirrorCli, startMirror, type MirrorProcess } from '../../helpers/mirror-process';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { newSecret, proxyTls, waitUntil } from '../../helpers/proxy-fixtures';
import { SmtpDialog } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-mirror-failover-');
const mtas: MtaProcess[] = [];
const mirrors: MirrorProcess[] = [];
const relays: FreezableRelay[] = [];

afterAll(async () => {
  for (const m of mtas) await m.crash();
  for (const m of mirrors) await m.crash();
  for (const r of relays) await r.close();
});

/** Whether an MTA takes mail on `port` now: greeting 220, EHLO 250, MAIL FROM 250 (then the session is dropped). */
async function accepts(port: number): Promise<boolean> {
  let d: SmtpDialog | undefined;
  try {
    d = await SmtpDialog.open(port);
    if ((await d.reply(3_000)).code !== 220) return false;
    if ((await d.command('EHLO probe.test')).code !== 250) return false;
    return (await d.command('MAIL FROM:<probe@probe.test>')).code === 250;
  } catch {
    return false;
  } finally {
    d?.destroy();
  }
}

async function status(admin: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://${admin}/status`)).json()) as Record<string, unknown>;
}

/** Polls `admin`'s /status until `check` holds. */
async function until(admin: string, check: (s: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> | undefined;
  let ok = false;
  let done = false;
  const loop = (async () => {
    while (!done && !ok) {
      last = await status(admin).catch(() => last);
      ok = last !== undefined && check(last);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    await waitUntil(() => ok, 60_000, () => `${what}: ${JSON.stringify(last)}\n${mirrors.map((m) => m.log().slice(-3000)).join('\n---\n')}`);
  } finally {
    done = true;
    await loop;
  }
  return last!;
}

/** The lease files' highest generation (each renewal adds one). */
function generation(arbiterDir: string): number {
  return Math.max(0, ...readdirSync(arbiterDir).map((f) => /^lease\.json\.([0-9]+)$/.exec(f)?.[1]).filter((g): g is string => g !== undefined).map(Number));
}

test('automatic failover: a link cut alone promotes nothing; a primary cut off from the arbiter fences itself before its peer takes over, and the two never accept mail at once', async () => {
  const tls = await proxyTls(dir);
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  writeFileSync(join(dir, 'admin.token'), `${ADMIN_TOKEN}\n`);
  const ppA = join(dir, 'node-a');
  const ppB = join(dir, 'node-b');
  const arbiterDir = join(dir, 'arbiter');
  const aView = join(dir, 'a-view'); // node A's way to the arbiter: a symlink the test replaces to cut it
  for (const d of [ppA, ppB, arbiterDir]) mkdirSync(d);
  symlinkSync(arbiterDir, aView);
  const promotedFlag = join(dir, 'b-promoted');
  const portsA = { smtp: await getFreePort(), http: await getFreePort(), admin: await getFreePort() };
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  // A dials B through the relay; B (once primary) dials A directly.
  const relay = await startFreezableRelay({ host: '127.0.0.1', port: port.b });
  relays.push(relay);
  const yaml = (name: string, pp: string, self: number, peer: number, admin: string, extra: string): string => {
    const file = join(dir, `${name}-mirror.yaml`);
    writeFileSync(
      file,
      `name: ${name}\npersistent_path: ${pp}\nlisten: 127.0.0.1:${self}\npeer: 127.0.0.1:${peer}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\nhandshake_timeout: 1s\nlease_ttl: 3s\nmta_admin_token_file: admin.token\n${extra}`,
    );
    return file;
  };
  const cfgA = yaml('a', ppA, port.a, relay.port, adminA, `arbiter: { file: ${join(aView, 'lease.json')} }\nmta_admin: 127.0.0.1:${portsA.admin}\n`);
  const cfgB = yaml('b', ppB, port.b, port.a, adminB, `arbiter: { file: ${join(arbiterDir, 'lease.json')} }\npromote_command: [touch, ${promotedFlag}]\n`);

  writeFileSync(join(dir, 'mta.yaml'), testConfigYaml({ sinkPort: await getFreePort(), relayFrom: ['127.0.0.0/8'] }));
  const mtaA = await startMta({ configPath: join(dir, 'mta.yaml'), persistentPath: ppA, workers: 2, ports: portsA });
  mtas.push(mtaA);
  const aExit = new Promise<number | null>((r) => mtaA.proc.once('exit', (code) => r(code)));
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  // A lone node becomes the primary by hand; with an arbiter that takes the lease.
  expect((await fetch(`http://${adminA}/promote?force=1`, { method: 'POST' })).status).toBe(200);
  expect(generation(arbiterDir)).toBeGreaterThanOrEqual(1);
  const mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);
  await until(adminB, (s) => s.caught_up === true && (s.lease as { holder?: string } | undefined)?.holder === 'a', 'B caught up and seeing A\'s lease');
  // B's manual promotion is refused while A's lease is live.
  const refused = await fetch(`http://${adminB}/promote`, { method: 'POST' });
  expect(refused.status).toBe(409);
  expect(((await refused.json()) as { code: string }).code).toBe('ELEASEHELD');

  // Both SMTP ports probed from now on.
  let mtaBPort: number | undefined;
  const samples: { a: boolean; b: boolean; start: number; end: number }[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const start = Date.now();
      const [a, b] = await Promise.all([accepts(mtaA.smtpPort), mtaBPort === undefined ? false : accepts(mtaBPort)]);
      samples.push({ a, b, start, end: Date.now() });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  try {
    // 1. The link alone is cut: A keeps renewing its lease (more than a lease_ttl's worth of renewals), B stays a secondary.
    relay.freeze();
    const frozenAt = generation(arbiterDir);
    await waitUntil(() => generation(arbiterDir) >= frozenAt + 5, 60_000, () => `A renewed ${generation(arbiterDir) - frozenAt} times\n${mirrorA.log().slice(-2000)}`);
    expect(await status(adminB)).toMatchObject({ role: 'secondary', epoch: 1 });
    expect(await status(adminA)).toMatchObject({ role: 'primary', epoch: 1 });
    expect(existsSync(promotedFlag)).toBe(false);
    expect(samples.filter((s) => s.a).length).toBeGreaterThan(0);
    expect(await accepts(mtaA.smtpPort)).toBe(true);

    // 2. A loses the arbiter too (its path to it now ends at a file): it must fence itself; B takes over.
    rmSync(aView);
    writeFileSync(aView, 'the arbiter is out of reach from here\n');
    const b = await until(adminB, (s) => s.role === 'primary' && (s.promote_command as { exit?: number } | undefined)?.exit === 0, 'B promoted by the arbiter');
    expect(b).toMatchObject({ epoch: 2, lease: { holder: 'b', epoch: 2 } });
    expect(existsSync(promotedFlag)).toBe(true);
    expect(await aExit).toBe(0); // A's MTA was stopped gracefully (SIGTERM), intake first
    expect(mirrorA.log()).toContain('POST /drain/stop');
    // B's lease began (the write was made after) at its expiry minus the ttl; A's last one expired at its expires_at.
    const leases = readdirSync(arbiterDir)
      .filter((f) => /^lease\.json\.[0-9]+$/.test(f))
      .map((f) => JSON.parse(readFileSync(join(arbiterDir, f), 'utf8')) as { holder: string; expires_at: string })
      .map((l) => ({ holder: l.holder, expires: Date.parse(l.expires_at) }));
    const bLeaseStart = Math.min(...leases.filter((l) => l.holder === 'b').map((l) => l.expires)) - 3_000;
    const aLeaseEnd = Math.max(...leases.filter((l) => l.holder === 'a').map((l) => l.expires));

    // promote_command said "promoted": the MTA starts on B's persistent path (the same node, mirrored).
    writeFileSync(join(dir, 'mta-b.yaml'), testConfigYaml({ sinkPort: await getFreePort(), relayFrom: ['127.0.0.0/8'] }));
    const mtaB = await startMta({ configPath: join(dir, 'mta-b.yaml'), persistentPath: ppB, workers: 2 });
    mtas.push(mtaB);
    mtaBPort = mtaB.smtpPort;
    await waitUntil(() => samples.filter((s) => s.b).length >= 3, 60_000, () => `B's MTA not seen accepting: ${JSON.stringify(samples.slice(-3))}`);
    probing = false;
    await prober;

    // Never both at once; A's last acceptance ended before B took the lease, let alone accepted mail.
    expect(samples.filter((s) => s.a && s.b)).toEqual([]);
    const lastA = Math.max(...samples.filter((s) => s.a).map((s) => s.end));
    const firstB = Math.min(...samples.filter((s) => s.b).map((s) => s.start));
    // The fence kept its safety margin: A stopped taking mail well before its own lease could expire (a quarter ttl: 750 ms; at least half of it is asked).
    expect(aLeaseEnd - lastA).toBeGreaterThan(3_000 / 8);
    expect(lastA).toBeLessThan(bLeaseStart);
    expect(lastA).toBeLessThan(firstB);
    expect(samples.filter((s) => s.start > lastA && !s.a).length).toBeGreaterThan(0);
  } finally {
    probing = false;
    await prober;
  }

  // A is B's secondary of epoch 2 (fenced, then told the new epoch when B dialed it) and catches up.
  await until(adminA, (s) => s.role === 'secondary' && s.epoch === 2 && s.caught_up === true, 'A the caught-up secondary of epoch 2');
  expect((await fetch(`http://${adminA}/readyz`)).status).toBe(503);
  const metrics = await (await fetch(`http://${adminA}/metrics`)).text();
  expect(metrics).toMatch(/^volley_mirror_arbiter_errors [1-9]/m);
  expect(metrics).toMatch(/^volley_mirror_lease_held 0$/m);
  expect(await (await fetch(`http://${adminB}/metrics`)).text()).toMatch(/^volley_mirror_lease_held 1$/m);
  const human = await mirrorCli(['status', '--admin', adminB]);
  expect(human.stdout).toMatch(/^lease\s+b \(epoch 2\) until \S+, held by this node$/m);
  expect((await mirrorCli(['status', '--admin', adminA])).stdout).toMatch(/^arbiter\s+[1-9][0-9]* errors, last: /m);
}, 300_000);
