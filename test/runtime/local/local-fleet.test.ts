import { execFile, spawn } from 'node:child_process';
import { fleetEndpoints, startLocalFleet } from '../../helpers/local-fleet';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VOLLEY } from '../../helpers/mta-process';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { swaks } from '../../helpers/swaks';
import { childrenByParent, commandLine, pidAlive } from '../../helpers/procs';
import { smtpSourceWithAcks } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';
import { parseDocument } from 'yaml';
import { DEFAULT_LAYOUT } from '../../../runtime/local/fleet-layout';
import { X509Certificate } from 'node:crypto';
import { drainCaFile, drainCertificates, drainHint, writeMtaConfig } from '../../../runtime/local/local-fleet';

// Each fleet runs on free ports (--port-base auto) and the tests read the
// printed endpoints, so they never collide with a developer's `volley local`
// or the bench's fleet on the README's fixed ports.

// What a new user does after `npm install && npm start`: the same command,
// then swaks with the printed user, then Ctrl-C.
const data = tempDir();

test('volley local: swaks gets 250, the embedded sink receives the mail, Ctrl-C stops everything', async () => {
  const fleet = await startLocalFleet(['--data', data, '--port-base', 'auto']);
  let code: number | null = -1;
  try {
    const ep = fleetEndpoints(fleet.output());
    const r = await swaks(['--server', `127.0.0.1:${ep.smtp}`, '--tls', '--auth-user', 'volley', '--auth-password', 'volley', '--from', 'me@example.test', '--to', 'someone@example.test', '--header', 'Subject: hello from the test']);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const sink = join(data, 'sink');
    const end = Date.now() + 10_000;
    while (!(existsSync(sink) && readdirSync(sink).length > 0)) {
      if (Date.now() > end) throw new Error('the sink received nothing');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(readFileSync(join(sink, readdirSync(sink)[0]), 'utf8')).toContain('Subject: hello from the test');
  } finally {
    code = await fleet.stop();
  }
  expect(code).toBe(0);
  expect(fleet.output()).toContain('volley local: stopped');
});

/** Runs a command line through sh, as a user pastes it (no timeout: curl and swaks bound themselves). */
function sh(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', command], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** The README's HTTP example, exactly as written under "Trying it locally". */
function readmeCurl(): string {
  const readme = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
  const m = /# HTTP: one message[^\n]*\n(curl [\s\S]*?)\n\n/.exec(readme);
  if (!m) throw new Error('README: no HTTP curl example under "Trying it locally"');
  return m[1];
}

const endpointsData = tempDir();

test('the printed endpoints work as written: the README\'s curl through the lb, a too-big body gets 413, swaks straight to an MTA, status lines without a terminal', async () => {
  const fleet = await startLocalFleet(['--data', endpointsData, '--port-base', 'auto']);
  let code: number | null = -1;
  try {
    // Every MTA's own ports are printed (the free ones asked for, not the README's), and why there is no live line here.
    const ep = fleetEndpoints(fleet.output());
    expect(Object.keys(ep.mtas)).toEqual(['mta-1', 'mta-2']);
    expect([ep.smtp, ...Object.values(ep.mtas).map((m) => m.smtp)]).not.toContain(2525);
    expect(fleet.output()).toContain('stdout is not a terminal');

    // The README's curl, pasted as is but for the lb's port: through the lb to an MTA that reads the lb's PROXY header.
    expect(readmeCurl()).toContain('http://127.0.0.1:8080/v1/messages');
    const curl = await sh(readmeCurl().replaceAll('127.0.0.1:8080', ep.http));
    expect(curl.stderr).toBe('');
    expect(JSON.parse(curl.stdout)).toEqual({ id: expect.stringMatching(/^[0-9A-Z]{26}$/) });

    // Over http.max_body_size (50 MB by default) through the lb: a 413, not a reset.
    const big = join(endpointsData, 'big.json');
    writeFileSync(big, Buffer.alloc(50 * 1024 * 1024 + 1, 'x'));
    const tooBig = await sh(`curl -sS -o ${join(endpointsData, 'big.out')} -w '%{http_code}' -H 'Authorization: Bearer local-token' --data-binary @${big} http://${ep.http}/v1/messages`);
    expect(tooBig.stderr).toBe('');
    expect(tooBig.stdout).toBe('413');
    expect(readFileSync(join(endpointsData, 'big.out'), 'utf8')).toContain('"code":"too_large"');

    // swaks straight to mta-1 from 127.0.0.1, no PROXY header: served, not left waiting.
    const direct = await swaks(['--server', `127.0.0.1:${ep.mtas['mta-1'].smtp}`, '--from', 'me@example.test', '--to', 'direct@example.test', '--header', 'Subject: straight to mta-1']);
    expect(direct.output).toMatch(/250 2\.0\.0 Ok: queued as/);

    // No terminal: plain status lines once mail moves (2 accepted, 2 delivered).
    await waitUntil(() => /status: accepted 2 {2}delivered 2 /.test(fleet.output()), 30_000, () => fleet.output().slice(-500));
  } finally {
    code = await fleet.stop();
  }
  expect(code).toBe(0);
}, 120_000);

const pipedData = tempDir();

/** Parts a failed stop left orphaned (the bugs these tests catch): each still runs this build, so it is one this test started; its workers go with it. */
function killOrphans(parts: readonly number[]): void {
  for (const pid of parts) {
    if (!pidAlive(pid) || !commandLine(pid).includes(VOLLEY)) continue;
    for (const worker of childrenByParent().get(pid) ?? []) process.kill(worker, 'SIGKILL');
    process.kill(pid, 'SIGKILL');
  }
}

const early = tempDir();

test('a SIGTERM while the parts are still coming up stops the ones already running (a supervisor stopping `npm start` early)', async () => {
  // The signal handlers were set only once every part was ready: a SIGTERM before that took the default action and
  // left the parts started so far running on their ports, orphaned.
  const proc = spawn(process.execPath, [VOLLEY, 'local', '--data', early, '--port-base', 'auto'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let parts: number[] = [];
  try {
    // Signalled once every part runs (two proxies, two MTAs, the lb), before the MTAs answer /readyz.
    await waitUntil(() => (parts = childrenByParent().get(proc.pid!) ?? []).length >= 5, 30_000, () => out);
    expect(out).not.toContain('Ctrl-C stops everything');
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitUntil(() => parts.every((pid) => !pidAlive(pid)), 30_000, () => `still running: ${parts.filter(pidAlive).map((pid) => commandLine(pid).join(' ')).join('; ')}`);
  } finally {
    killOrphans(parts);
    proc.kill('SIGKILL');
  }
});

test('`volley local | head`: once the reader is gone, the fleet stops with it instead of leaving every part running on its ports', async () => {
  // Before, the status line written into the closed pipe failed with EPIPE, an 'error' on stdout that no one heard:
  // volley local died of it at once, and the lb, the MTAs and the proxies it had started ran on, orphaned.
  const fleet = await startLocalFleet(['--data', pipedData, '--port-base', 'auto']);
  const parts = childrenByParent().get(fleet.pid) ?? [];
  try {
    expect(parts).toHaveLength(5);
    const ep = fleetEndpoints(fleet.output());
    fleet.closeStdout();
    // Mail moves, so a status line is due: the first write that meets the closed pipe.
    const r = await swaks(['--server', `127.0.0.1:${ep.smtp}`, '--from', 'me@example.test', '--to', 'piped@example.test']);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    expect(await fleet.exited).toBe(0);
    await waitUntil(() => parts.every((pid) => !pidAlive(pid)), 30_000, () => `still running: ${parts.filter(pidAlive).join(' ')}\n${fleet.output().slice(-1500)}`);
    expect(fleet.output()).toContain('volley local: stdout closed (EPIPE); stopping the fleet');
    expect(fleet.output()).not.toContain("Unhandled 'error' event");
  } finally {
    if (pidAlive(fleet.pid)) await fleet.stop();
    killOrphans(parts);
  }
}, 120_000);

const mergedData = tempDir();

test('`volley local 2>&1 | head`: stderr is the same closed pipe, and the fleet still stops cleanly with every part', async () => {
  // Before, the stdout EPIPE handler wrote its notice to stderr, the same closed pipe: that EPIPE was an 'error' on
  // stderr that no one heard, and volley local died of it (exit 1) in the middle of the stop, orphaning the parts.
  const fleet = await startLocalFleet(['--data', mergedData, '--port-base', 'auto'], 60_000, true);
  const parts = childrenByParent().get(fleet.pid) ?? [];
  try {
    expect(parts).toHaveLength(5);
    const ep = fleetEndpoints(fleet.output());
    fleet.closeStdout();
    // Mail moves, so a status line is due: the first write that meets the closed pipe.
    const r = await swaks(['--server', `127.0.0.1:${ep.smtp}`, '--from', 'me@example.test', '--to', 'merged@example.test']);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    expect(await fleet.exited).toBe(0);
    await waitUntil(() => parts.every((pid) => !pidAlive(pid)), 30_000, () => `still running: ${parts.filter(pidAlive).join(' ')}`);
  } finally {
    if (pidAlive(fleet.pid)) await fleet.stop();
    killOrphans(parts);
  }
}, 120_000);

// The local fleet as `npm start` runs it (lb -> 2 MTAs -> 2 proxies -> sink);
// 10,000 messages through the lb; one MTA SIGKILLed halfway and restarted.
const fleetData = tempDir();

function primaryPid(mta: string): number {
  return Number(readFileSync(join(fleetData, mta, 'mta.lock'), 'utf8').trim());
}

function killTree(pid: number): void {
  for (const child of childrenByParent().get(pid) ?? []) process.kill(child, 'SIGKILL');
  process.kill(pid, 'SIGKILL');
}

// A duplicate's first copy must have reached the sink at most this long before the kill.
const RECENT_MS = 2000;

test('kill -9 one MTA in the middle of 10,000 messages: only its open sessions fail, every acknowledged message arrives', async () => {
  const fleet = await startLocalFleet(['--data', fleetData, '--port-base', 'auto']);
  try {
    const ep = fleetEndpoints(fleet.output());
    let killedAt = -1;
    let killTime = 0;
    let firstAckTime = 0;
    let restart: Promise<unknown> | undefined;
    // Postfix's smtp-source is the load (one per session, see the helper for how
    // it reports what was acknowledged and why a run that dies starts again).
    const tally = await smtpSourceWithAcks({
      port: ep.smtp,
      sessions: 20,
      messages: 10_000,
      domain: 'sink.test',
      onAck: (n) => {
        if (n === 1) firstAckTime = Date.now();
        // Halfway, and late enough that mail delivered well before the kill
        // exists: an MTA that resent it would show as an old duplicate.
        if (killedAt >= 0 || n < 5000 || Date.now() - firstAckTime < 3 * RECENT_MS) return;
        killedAt = n;
        killTime = Date.now();
        killTree(primaryPid('mta-1'));
        // Restart it as `volley local` says to, after a moment.
        restart = new Promise((r) => setTimeout(r, 1500)).then(() => {
          const hint = /Restart it with: (\S+) \S+ (mta .*)\n/.exec(fleet.output());
          if (!hint) throw new Error(`no restart hint:\n${fleet.output()}`);
          // The hint names the fleet's own Node (the pinned one), which is this test's too.
          expect(hint[1]).toBe(process.execPath);
          const p = spawn(hint[1], [VOLLEY, ...hint[2].split(' ')], { stdio: 'ignore', detached: true });
          p.unref();
          return p;
        });
      },
    });
    expect(killedAt).toBeGreaterThanOrEqual(5000);
    await restart;
    // Errors only from sessions that were open on the killed MTA (20 at most, each once).
    expect(tally.errors.length).toBeLessThanOrEqual(20);
    const lostInFlight = tally.errors.filter((e) => !e.startsWith('(between messages)'));
    expect(tally.acked.length + lostInFlight.length).toBe(10_000);

    const sink = join(fleetData, 'sink');
    // Each recipient's copies in the sink, by the time each copy was written.
    const seen = new Map<string, number[]>();
    const read = (): void => {
      seen.clear();
      for (const f of readdirSync(sink)) {
        // The MTA names the one recipient in its Received header: smtp-source's -N made it unique.
        const t = /\tfor <([^>]+)>/.exec(readFileSync(join(sink, f), 'latin1'))?.[1];
        if (!t) continue;
        const at = statSync(join(sink, f)).mtimeMs;
        const copies = seen.get(t);
        if (copies) copies.push(at);
        else seen.set(t, [at]);
      }
    };
    const end = Date.now() + 90_000;
    for (;;) {
      read();
      if (tally.acked.every((t) => seen.has(t)) || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(tally.acked.filter((t) => !seen.has(t))).toEqual([]);
    // Then until the sink has been quiet for 3 s: a redelivery (a third copy, say) still on its way counts too.
    for (let count = readdirSync(sink).length, quietSince = Date.now(); Date.now() - quietSince < 3000 && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 500));
      const now = readdirSync(sink).length;
      if (now !== count) [count, quietSince] = [now, Date.now()];
    }
    read();
    const duplicates = [...seen.values()].filter((copies) => copies.length > 1);
    // How long before the kill each duplicate's first copy reached the sink.
    const ages = duplicates.map((copies) => killTime - Math.min(...copies));
    process.stdout.write(`fleet kill: ${tally.acked.length} acknowledged, ${tally.errors.length} client errors, ${duplicates.length} duplicates; the oldest first copy reached the sink ${ages.length ? Math.max(...ages).toFixed(0) : '-'} ms before the kill (negative: after it, finishing a transaction the MTA had sent)\n`);
    // A duplicate is a transaction whose result the killed MTA had not yet made
    // durable: one open to a proxy, or answered and waiting for its group
    // commit, so its first copy is at most a transaction and two commits old.
    // How many there are depends on the load at the kill instant; what makes
    // one a duplicate does not. Mail had been reaching the sink for
    // 3 × RECENT_MS before the kill, so an MTA that forgot durable results
    // would resend copies older than RECENT_MS, and fail here.
    expect(killTime - Math.min(...[...seen.values()].flat())).toBeGreaterThan(2 * RECENT_MS);
    expect(ages.filter((age) => age > RECENT_MS)).toEqual([]);
    expect(duplicates.filter((copies) => copies.length > 2)).toEqual([]);
  } finally {
    await fleet.stop();
    try {
      killTree(primaryPid('mta-1')); // the restarted MTA is not the fleet's child
    } catch {
      // already stopped
    }
  }
}, 240_000);

describe('drain, locally: each MTA its own drain endpoint, and the command that drains mta-1 into mta-2', () => {
  const configs = new Map([
    ['mta-1', '/data/volley-mta-1.yaml'],
    ['mta-2', '/data/volley-mta-2.yaml'],
  ]);

  test('the printed command runs on mta-1 (its config, its persistent path and admin API) and sends to mta-2\'s drain port', () => {
    const lines = drainHint(DEFAULT_LAYOUT, configs, '/opt/x/volley.js', '/data');
    expect(lines[0]).toContain('drain mta-1 into mta-2');
    expect(lines[1]?.trim()).toBe(`VOLLEY_ADMIN_TOKEN=local-admin ${process.execPath} /opt/x/volley.js drain --config /data/volley-mta-1.yaml --persistent-path /data/mta-1 --admin 127.0.0.1:8027 --ca-file /data/drain-ca.crt 127.0.0.1:8444`);
  });

  const dir = tempDir();
  test('each MTA\'s config is the fleet\'s plus its own drain listener on loopback, one secret, loopback admitted', () => {
    const doc = parseDocument('hostname: mta.volley.test\nsmtp:\n  relay_from: [127.0.0.0/8]\n');
    const secret = join(dir, 'drain.secret');
    const tls = (name: string) => ({ cert: `/data/${name}/drain.crt`, key: `/data/${name}/drain.key` });
    const written = DEFAULT_LAYOUT.mtas.map((m) => parseDocument(readFileSync(writeMtaConfig(dir, doc, m, secret, tls(m.name)), 'utf8')).toJSON() as Record<string, unknown>);
    expect(written.map((c) => c.drain)).toEqual(
      DEFAULT_LAYOUT.mtas.map((m) => ({ listen: { address: '127.0.0.1', port: m.drain }, secret_file: secret, accept_from: ['127.0.0.0/8'], tls: tls(m.name) })),
    );
    expect(new Set(DEFAULT_LAYOUT.mtas.map((m) => m.drain)).size).toBe(DEFAULT_LAYOUT.mtas.length);
    for (const c of written) expect({ ...c, drain: undefined }).toEqual({ hostname: 'mta.volley.test', smtp: { relay_from: ['127.0.0.0/8'] }, drain: undefined });
    // The fleet's document itself is left as it was (each MTA got a copy).
    expect(doc.has('drain')).toBe(false);
  });

  test('each MTA\'s drain certificate is for 127.0.0.1 and issued by the fleet\'s drain CA (what --ca-file trusts), made once and kept', async () => {
    const certs = await drainCertificates(dir, DEFAULT_LAYOUT);
    const ca = new X509Certificate(readFileSync(drainCaFile(dir)));
    for (const m of DEFAULT_LAYOUT.mtas) {
      const cert = new X509Certificate(readFileSync(certs.get(m.name)?.cert as string));
      expect({ mta: m.name, ip: cert.checkIP('127.0.0.1'), byCa: cert.verify(ca.publicKey) }).toEqual({ mta: m.name, ip: '127.0.0.1', byCa: true });
    }
    const first = readFileSync(certs.get('mta-1')?.cert as string, 'utf8');
    await drainCertificates(dir, DEFAULT_LAYOUT);
    expect(readFileSync(certs.get('mta-1')?.cert as string, 'utf8')).toBe(first);
  });
});
