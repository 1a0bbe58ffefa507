import { connect } from 'node:net';
import { startLb, type Lb } from '../../../runtime/lb/lb';
import { resolveOptions, type LbFlags } from '../../../runtime/lb/options';
import { createLogger } from '../../../runtime/shared/log';
import { testConfig } from '../../helpers/config';
import { startIntake } from '../../helpers/intake-harness';
import { tempDir } from '../../helpers/tmp';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { swaks } from '../../helpers/swaks';
import { closedPort, startFakeMta, until, type FakeMta } from './fake-mta';

const logger = createLogger({ level: 'silent' });
const running: Lb[] = [];
const mtas: FakeMta[] = [];

afterEach(async () => {
  for (const lb of running.splice(0)) {
    lb.closeSessions();
    await lb.stop(0);
  }
  for (const m of mtas.splice(0)) await m.close();
});

async function mta(name: string, o: Parameters<typeof startFakeMta>[1] = {}): Promise<FakeMta> {
  const m = await startFakeMta(name, o);
  mtas.push(m);
  return m;
}

/** An lb on 127.0.0.1 with an ephemeral SMTP port and admin port; health checks slow unless asked. */
async function lb(backends: number[], flags: Partial<LbFlags> = {}): Promise<{ lb: Lb; port: number; admin: string }> {
  const options = resolveOptions({
    listeners: [{ listen: '127.0.0.1:1=smtp', backends: backends.map((p) => `127.0.0.1:${p}`) }],
    admin: '127.0.0.1:1',
    healthInterval: '60s',
    greetingTimeout: '2s',
    connectTimeout: '2s',
    ...flags,
  });
  // Port 0 is not a valid flag value; bind ephemeral ports here.
  options.listeners[0].port = 0;
  options.listeners[0].name = 'front';
  options.admin!.port = 0;
  const l = await startLb(options, logger);
  running.push(l);
  return { lb: l, port: Object.values(l.ports)[0], admin: `http://127.0.0.1:${l.adminPort}` };
}

function backendsOf(l: Lb): ReturnType<Lb['status']>['listeners'][0]['backends'] {
  return l.status().listeners[0].backends;
}

/** Greeting and a whole transaction; returns the backend's name (from its greeting) and the final reply. */
async function session(port: number, localAddress?: string): Promise<{ name: string; final: number }> {
  const c = await SmtpDialog.open(port, '127.0.0.1', localAddress);
  const g = await c.reply();
  expect(g.code).toBe(220);
  // A second greeting would be read here instead of the EHLO reply.
  const e = await c.command('EHLO client.test');
  expect(e.code).toBe(250);
  const r = await c.transaction('a@example.test', ['b@example.test'], message());
  const q = await c.command('QUIT');
  expect(q.code).toBe(221);
  c.destroy();
  return { name: g.text.split(' ')[0], final: r.code };
}

test('a client through the lb gets the backend greeting and completes a dialogue with swaks', async () => {
  const a = await mta('mta-a');
  const { port } = await lb([a.port]);
  const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@example.test', '--to', 'b@example.test', '--helo', 'client.test']);
  expect(r.status).toBe(0);
  expect(r.output).toMatch(/<-\s+220 mta-a ESMTP ready/);
  expect(r.output).toMatch(/<-\s+250 2\.0\.0 queued by mta-a/);
  expect(a.messages).toBe(1);
});

test('refusing, 554-greeting and closing backends are skipped while the client waits: one greeting, from the good one', async () => {
  const refused = await closedPort();
  const r554 = await mta('mta-554', { behaviour: 'reject554' });
  const closer = await mta('mta-close', { behaviour: 'close' });
  const good = await mta('mta-good');
  const { lb: l, port } = await lb([refused, r554.port, closer.port, good.port], { fall: 100 });
  for (let i = 0; i < 4; i++) {
    const s = await session(port);
    expect(s).toEqual({ name: 'mta-good', final: 250 });
  }
  const st = l.status().listeners[0];
  expect(st.counters.retries).toBeGreaterThanOrEqual(3);
  expect(st.counters.noBackend).toBe(0);
  const b = backendsOf(l);
  expect(b[0].lastFailure?.reason).toBe('refused');
  expect(b[1].lastFailure?.reason).toBe('bad_greeting');
  expect(b[2].lastFailure?.reason).toBe('closed');
  expect(good.messages).toBe(4);
});

test('a backend that accepts but never greets: after the greeting timeout the client is served by the next, one greeting', async () => {
  const silent = await mta('mta-silent', { behaviour: 'silent' });
  const good = await mta('mta-good');
  const { lb: l, port } = await lb([silent.port, good.port], { greetingTimeout: '300ms', fall: 100 });
  const t0 = Date.now();
  // The first session of a fresh pool goes to the first backend.
  const s = await session(port);
  expect(s).toEqual({ name: 'mta-good', final: 250 });
  expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  expect(backendsOf(l)[0].lastFailure?.reason).toBe('greeting_timeout');
  // The lb closed its connection to the silent backend.
  await until('silent backend connection closed', () => silent.open === 0);
  expect(silent.accepted).toBe(1);
});

test('every backend down: the client gets 421 4.3.2 and a close', async () => {
  const { lb: l, port, admin } = await lb([await closedPort(), await closedPort()]);
  const c = await SmtpDialog.open(port);
  const r = await c.reply();
  expect(r.code).toBe(421);
  expect(r.text).toBe('4.3.2 no MTA available, try again later');
  await until('client closed', () => c.closed);
  expect(l.status().listeners[0].counters.noBackend).toBe(1);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  expect(metrics).toMatch(/volley_lb_connections_rejected_total\{listener="front",reason="no_backend"\} 1/);
  expect(metrics).toMatch(/volley_lb_backend_failures_total\{listener="front",backend="127\.0\.0\.1:\d+",reason="refused"\} 1/);
});

test('health: a backend taken down is out after fall checks, traffic avoids it, it is back after rise checks', async () => {
  const a = await mta('mta-a');
  const b = await mta('mta-b');
  const { lb: l, port, admin } = await lb([a.port, b.port], { healthInterval: '100ms', fall: 3, rise: 2 });
  await until('checks pass', () => backendsOf(l).every((x) => x.lastCheck?.ok === true));
  await a.close();
  await until('a down', () => backendsOf(l)[0].up === false);
  expect(backendsOf(l)[0].consecutiveFailures).toBeGreaterThanOrEqual(3);
  expect(backendsOf(l)[1].up).toBe(true);
  expect((await fetch(`${admin}/readyz`)).status).toBe(200);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  expect(metrics).toMatch(new RegExp(`volley_lb_backend_up\\{listener="front",backend="127.0.0.1:${a.port}"\\} 0`));
  const failuresBefore = backendsOf(l)[0].failures;
  for (let i = 0; i < 4; i++) expect((await session(port)).name).toBe('mta-b');
  // No client was sent to the down backend: no retry, and no failure beyond the checks' own.
  expect(l.status().listeners[0].counters.retries).toBe(0);
  expect(backendsOf(l)[0].failures - failuresBefore).toBeLessThanOrEqual(3);
  await a.reopen();
  const t0 = Date.now();
  await until('a up', () => backendsOf(l)[0].up === true);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(80); // two passed checks, one interval apart, not one
  const names = new Set<string>();
  for (let i = 0; i < 4; i++) names.add((await session(port)).name);
  expect(names).toEqual(new Set(['mta-a', 'mta-b']));
});

test('failures on real traffic count towards fall', async () => {
  const good = await mta('mta-good');
  const { lb: l, port } = await lb([await closedPort(), good.port], { fall: 2 });
  for (let i = 0; i < 4; i++) expect((await session(port)).name).toBe('mta-good');
  expect(backendsOf(l)[0].up).toBe(false);
});

test('least connections: new sessions go to the less loaded backend', async () => {
  const a = await mta('mta-a');
  const b = await mta('mta-b');
  const { lb: l, port } = await lb([a.port, b.port]);
  const held: { c: SmtpDialog; name: string }[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await SmtpDialog.open(port);
    held.push({ c, name: (await c.reply()).text.split(' ')[0] });
  }
  expect(held.filter((h) => h.name === 'mta-a')).toHaveLength(2);
  expect(held.filter((h) => h.name === 'mta-b')).toHaveLength(2);
  for (const h of held.filter((x) => x.name === 'mta-a')) await h.c.quit();
  await until('a idle', () => backendsOf(l)[0].active === 0);
  expect(backendsOf(l)[1].active).toBe(2);
  const next: SmtpDialog[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await SmtpDialog.open(port);
    next.push(c);
    expect((await c.reply()).text).toMatch(/^mta-a /);
  }
  // Now 2 and 2: both again.
  for (const c of [...next, ...held.map((h) => h.c)]) c.destroy();
});

test('PROXY v1: the backend reads the real client address first', async () => {
  const a = await mta('mta-a', { proxy: true });
  const { lb: l, port } = await lb([a.port], { proxyProtocol: true });
  const c = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.7');
  expect((await c.reply()).code).toBe(220);
  const local = (c as unknown as { socket: { localPort: number } }).socket.localPort;
  await c.quit();
  expect(a.proxyHeaders).toEqual([`PROXY TCP4 127.0.0.7 127.0.0.1 ${local} ${port}`]);
  expect(l.status().listeners[0].proxyProtocol).toBe(true);
});

test('--source-address: sessions and health checks reach the backend from that address', async () => {
  const a = await mta('mta-a', { proxy: true });
  await lb([a.port], { proxyProtocol: true, sourceAddress: '127.0.0.9', healthInterval: '50ms' });
  await waitUntil(() => a.accepted >= 2, 5_000, () => `${a.accepted} connections`);
  expect(new Set(a.peers)).toEqual(new Set(['127.0.0.9']));
  // The checks name no client: the MTA must not count them against one.
  expect(a.proxyHeaders[0]).toBe('PROXY UNKNOWN');
});

test('a backend that refuses one client in its greeting is skipped for that client but stays in the pool', async () => {
  const r554 = await mta('mta-554', { behaviour: 'reject554' });
  const good = await mta('mta-good');
  const { lb: l, port } = await lb([r554.port, good.port], { fall: 1 });
  for (let i = 0; i < 3; i++) expect((await session(port)).name).toBe('mta-good');
  expect(r554.accepted).toBeGreaterThanOrEqual(1);
  expect(backendsOf(l)[0]).toMatchObject({ up: true, consecutiveFailures: 0, lastFailure: { reason: 'bad_greeting' } });
});

const intakeDir = tempDir();

test('Volley\'s MTA behind the lb: its per-client limit refuses the client the PROXY header names, and the lb keeps the MTA in its pool', async () => {
  const config = testConfig({ relayFrom: ['127.0.0.0/8'] });
  config.smtp.trustedProxies = ['127.0.0.9/32'];
  config.smtp.maxConnectionsPerClient = 2;
  const h = await startIntake(config, intakeDir);
  try {
    const { lb: l, port } = await lb([h.smtpPort], { proxyProtocol: true, sourceAddress: '127.0.0.9', healthInterval: '50ms', fall: 1 });
    const held = [await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21'), await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21')];
    for (const c of held) expect((await c.reply()).code).toBe(220);
    // The third from that client: the MTA refuses it, the lb has no other MTA
    // and passes the MTA's reason on rather than its own "no MTA available".
    const third = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21');
    const refused = await third.reply();
    expect(refused.code).toBe(421);
    expect(refused.text).toMatch(/^4\.7\.0 too many connections from your address/);
    third.destroy();
    // Checks go on passing (the lb's own address is not limited), and the MTA stays up.
    const checksBefore = backendsOf(l)[0].lastCheck?.at;
    await waitUntil(() => backendsOf(l)[0].lastCheck?.at !== checksBefore && backendsOf(l)[0].lastCheck?.ok === true);
    expect(backendsOf(l)[0].up).toBe(true);
    // Another client is served.
    const other = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.22');
    expect((await other.reply()).code).toBe(220);
    for (const c of [...held, other]) await c.quit();
  } finally {
    await h.close();
  }
});

test('a flood of 500 clients that connect and vanish: no crash, no leaked session, a normal client still works', async () => {
  const slow = await mta('mta-slow', { greetDelayMs: 20 });
  const fast = await mta('mta-fast');
  const { lb: l, port, admin } = await lb([slow.port, fast.port]);
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const s = connect({ port, host: '127.0.0.1' });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      const kind = i % 5;
      if (kind === 0) s.on('connect', () => s.destroy()); // gone at once
      else if (kind === 1) s.on('connect', () => setTimeout(() => s.destroy(), i % 25)); // while the lb waits for a greeting
      else if (kind === 2) s.on('connect', () => s.resetAndDestroy()); // RST
      else if (kind === 3) s.once('data', () => s.destroy()); // right after the greeting
      else s.once('data', () => (s.write('EHLO x\r\nMAIL FROM:<a@b>\r\n'), s.destroy())); // mid-dialogue
    });
  for (let batch = 0; batch < 5; batch++) await Promise.all(Array.from({ length: 100 }, (_, k) => one(batch * 100 + k)));
  await until('no active sessions', () => l.status().active === 0);
  await until('backends idle', () => backendsOf(l).every((b) => b.active === 0) && slow.open === 0 && fast.open === 0);
  const st = (await (await fetch(`${admin}/status`)).json()) as { active: number; listeners: { counters: { connections: number }; backends: { active: number; up: boolean }[] }[] };
  expect(st.active).toBe(0);
  expect(st.listeners[0].counters.connections).toBe(500);
  expect(st.listeners[0].backends.map((b) => [b.active, b.up])).toEqual([[0, true], [0, true]]);
  expect((await session(port)).final).toBe(250);
}, 30_000);

test('max connections: one over the limit gets 421 and the rest carry on', async () => {
  const a = await mta('mta-a');
  const { lb: l, port } = await lb([a.port], { maxConnections: 2 });
  const held = [await SmtpDialog.open(port), await SmtpDialog.open(port)];
  for (const h of held) expect((await h.reply()).code).toBe(220);
  const over = await SmtpDialog.open(port);
  expect((await over.reply()).text).toMatch(/^4\.7\.0 too many connections/);
  expect(l.status().listeners[0].counters.rejectedMaxConnections).toBe(1);
  for (const h of held) await h.quit();
  await until('slots free', () => l.status().active === 0);
  expect((await session(port)).final).toBe(250);
});

test('max connections per client: one client holding connections cannot take every slot; past its share it gets 421, another client is served', async () => {
  // An MTA fleet whose own per-client limits add up past the lb's total (many
  // workers, many MTAs): only the lb can keep one address from taking it all.
  const a = await mta('mta-a');
  const { lb: l, port } = await lb([a.port], { maxConnections: 4, maxConnectionsPerClient: 2 });
  const held = [await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21'), await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21')];
  for (const h of held) expect((await h.reply()).code).toBe(220);
  const over = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21');
  const refused = await over.reply();
  expect(refused.code).toBe(421);
  expect(refused.text).toMatch(/^4\.7\.0 too many connections from your address/);
  over.destroy();
  expect(l.status().listeners[0].counters.rejectedPerClient).toBe(1);
  expect((await session(port, '127.0.0.22')).final).toBe(250);
  // Its slots come back as its sessions end.
  await held[0].quit();
  await until('a slot back', () => l.status().active === 1);
  const again = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.21');
  expect((await again.reply()).code).toBe(220);
  for (const h of [held[1], again]) await h.quit();
});

test('tcp mode: no greeting wait, retries a refused backend', async () => {
  const echo = await mta('mta-a'); // speaks first; in tcp mode the lb passes it straight through
  const options = resolveOptions({ listeners: [{ listen: '127.0.0.1:1=tcp', backends: [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${echo.port}`] }], noAdmin: true, healthInterval: '60s' });
  options.listeners[0].port = 0;
  const l = await startLb(options, logger);
  running.push(l);
  const c = await SmtpDialog.open(Object.values(l.ports)[0]);
  expect((await c.reply()).text).toMatch(/^mta-a /);
  await c.quit();
  expect(l.status().listeners[0].counters.retries).toBe(1);
});

test('a real SMTP server behind the lb: STARTTLS passes end to end and the PROXY header gives it the client address', async () => {
  const { SMTPServer } = await import('smtp-server');
  const seen: { remote?: string; secure?: boolean; body?: string } = {};
  const server = new SMTPServer({
    useProxy: true,
    authOptional: true,
    banner: 'real-mta',
    logger: false,
    onConnect(s, cb) {
      seen.remote = s.remoteAddress;
      cb();
    },
    onData(stream, s, cb) {
      let body = '';
      stream.on('data', (d: Buffer) => (body += d.toString()));
      stream.on('end', () => {
        seen.secure = s.secure;
        seen.body = body;
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const backendPort = (server.server.address() as { port: number }).port;
  try {
    const { port } = await lb([backendPort], { proxyProtocol: true });
    const c = await SmtpDialog.open(port, '127.0.0.1', '127.0.0.9');
    expect((await c.reply()).text).toMatch(/real-mta/);
    expect((await c.command('EHLO client.test')).text).toMatch(/STARTTLS/);
    await c.starttls();
    expect((await c.command('EHLO client.test')).code).toBe(250);
    expect((await c.transaction('a@example.test', ['b@example.test'], message('through tls'))).code).toBe(250);
    await c.quit();
    expect(seen).toEqual({ remote: '127.0.0.9', secure: true, body: expect.stringContaining('Subject: through tls') });
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('apply (a reload): new backends take new sessions, backends still listed keep their counters; changing the listeners is refused', async () => {
  const [a, b] = [await mta('mta-a'), await mta('mta-b')];
  const { lb: l, port } = await lb([a.port]);
  expect((await session(port)).name).toBe('mta-a');
  const options = resolveOptions({ listeners: [{ listen: '127.0.0.1:1=smtp', backends: [`127.0.0.1:${b.port}`, `127.0.0.1:${a.port}`] }], admin: '127.0.0.1:1', healthInterval: '60s' });
  options.listeners[0].port = 0;
  options.listeners[0].name = 'front';
  options.admin!.port = 0;
  l.apply(options);
  expect(backendsOf(l).map((x) => [x.address, x.served])).toEqual([
    [`127.0.0.1:${b.port}`, 0],
    [`127.0.0.1:${a.port}`, 1],
  ]);
  // Least connections with a tie: both new sessions land, one on each.
  const names = [(await session(port)).name, (await session(port)).name].sort();
  expect(names).toEqual(['mta-a', 'mta-b']);
  const moved = { ...options, listeners: [{ ...options.listeners[0], port: 2 }] };
  expect(() => l.apply(moved)).toThrow(expect.objectContaining({ code: 'EBADCONFIG', message: expect.stringMatching(/listeners changed/) }));
});

test('SMTP: once the MTA has closed (after its 221), the lb closes the session on both sides at once, without waiting for the client to close its own', async () => {
  // A client that quits without reading the 221 (Postfix's default) resets
  // the connection; an lb that half-closed it and reads on turns that reset
  // into an error object per message. This client never closes its side:
  // the session must end all the same.
  const a = await mta('mta-a');
  const { lb: l, port } = await lb([a.port]);
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let text = '';
  let ended = false;
  c.on('data', (d: Buffer) => (text += d.toString()));
  c.on('end', () => (ended = true));
  c.on('error', () => undefined);
  await waitUntil(() => text.includes('220 '), 5_000, () => text);
  c.write('QUIT\r\n');
  await waitUntil(() => ended, 5_000, () => text);
  expect(text).toMatch(/221 2\.0\.0 mta-a bye/);
  await waitUntil(() => l.status().active === 0 && a.open === 0, 5_000, () => `lb sessions ${l.status().active}, MTA connections ${a.open}`);
  expect(c.destroyed).toBe(false);
  c.destroy();
});

test('a session with no byte either way for the idle timeout is closed by the sweep; one moving bytes is not', async () => {
  const a = await mta('mta-a');
  const { lb: l, port } = await lb([a.port], { idleTimeout: '400ms' });
  const quiet = await SmtpDialog.open(port);
  expect((await quiet.reply()).code).toBe(220);
  const busy = await SmtpDialog.open(port);
  expect((await busy.reply()).code).toBe(220);
  // NOOPs keep `busy` moving until `quiet` has been closed for being idle.
  let moving = true;
  const keepBusy = (async () => {
    while (moving) expect((await busy.command('NOOP')).code).toBe(250);
  })();
  await waitUntil(() => quiet.closed, 10_000, () => `active sessions ${l.status().active}`);
  moving = false;
  await keepBusy;
  expect(busy.closed).toBe(false);
  expect(l.status().active).toBe(1);
  await busy.quit();
});
