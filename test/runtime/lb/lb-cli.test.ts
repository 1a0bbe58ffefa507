import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { build } from 'esbuild';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';
import { closedPort, startFakeMta, until, type FakeMta } from './fake-mta';

const DIST = join(__dirname, '..', '..', '..', 'dist', 'volley.js');

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => resolve({ code, out }));
  });
}

/** The bundled CLI if it has the `lb` verb; otherwise the verb bundled on its own, as bin/build.mjs would. */
async function volleyScript(dir: string): Promise<string> {
  if (existsSync(DIST) && /--greeting-timeout/.test((await run([DIST, 'lb', '--help'])).out)) return DIST;
  const out = join(dir, 'volley-lb.js');
  await build({ entryPoints: [join(__dirname, 'volley-lb-entry.ts')], outfile: out, bundle: true, platform: 'node', target: 'node24', format: 'cjs', external: ['aws-cdk-lib', 'constructs'], logLevel: 'warning' });
  return out;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.on('connect', () => (s.destroy(), resolve(false)));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

const dir = tempDir();
let script: string;
beforeAll(async () => {
  script = await volleyScript(dir);
}, 30_000);

let proc: ChildProcess | undefined;
let mta: FakeMta | undefined;
afterEach(async () => {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
  await mta?.close();
});

test('graceful stop (the CLI): after SIGTERM new connections are refused, an open session finishes its transaction, an idle one is closed at the drain timeout', async () => {
  mta = await startFakeMta('mta-a');
  const [port, adminPort] = [await closedPort(), await closedPort()];
  const p = spawn(process.execPath, [script, 'lb', '--listen', `127.0.0.1:${port}=smtp`, '--backend', `127.0.0.1:${mta.port}`, '--admin', `127.0.0.1:${adminPort}`, '--health-interval', '200ms', '--drain-timeout', '2s'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc = p;
  let log = '';
  p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  const admin = `http://127.0.0.1:${adminPort}`;
  await until('lb up', async () => (await fetch(`${admin}/healthz`).catch(() => undefined))?.ok === true);

  const busy = await SmtpDialog.open(port);
  expect((await busy.reply()).text).toMatch(/^mta-a /);
  expect((await busy.command('EHLO client.test')).code).toBe(250);
  expect((await busy.command('MAIL FROM:<a@example.test>')).code).toBe(250);
  const idle = await SmtpDialog.open(port);
  expect((await idle.reply()).code).toBe(220);

  const t0 = Date.now();
  p.kill('SIGTERM');
  await until('new connections refused', () => refused(port), 5000);
  expect((await fetch(`${admin}/healthz`)).status).toBe(503);
  expect((await busy.command('RCPT TO:<b@example.test>')).code).toBe(250);
  expect((await busy.command('DATA')).code).toBe(354);
  busy.send(message());
  busy.send('\r\n.\r\n');
  expect((await busy.reply()).text).toBe('2.0.0 queued by mta-a');
  expect((await busy.command('QUIT')).code).toBe(221);
  expect(mta.messages).toBe(1);

  expect(await exited).toBe(0);
  const took = Date.now() - t0;
  expect(took).toBeGreaterThanOrEqual(1900);
  expect(took).toBeLessThan(5000);
  await until('idle session closed', () => idle.closed, 1000);
  expect(log).toMatch(/drain timeout: closing the sessions left/);
  expect(mta.open).toBe(0);
}, 20_000);

test('the CLI refuses a --backend without a --listen and bad durations, with a clear message', async () => {
  const a = await run([script, 'lb', '--backend', '127.0.0.1:25']);
  expect(a.code).toBe(1);
  expect(a.out).toMatch(/--backend belongs to a --listen/);
  const b = await run([script, 'lb', '--listen', '127.0.0.1:2525', '--backend', '127.0.0.1:25', '--greeting-timeout', 'soon']);
  expect(b.code).toBe(1);
  expect(b.out).toMatch(/"soon" is not a duration/);
});

test('the CLI: each --backend goes with the --listen before it; a YAML file fills what flags leave out', async () => {
  mta = await startFakeMta('mta-a');
  const [smtp, http, adminPort] = [await closedPort(), await closedPort(), await closedPort()];
  const other = await closedPort();
  const config = join(dir, 'lb.yaml');
  writeFileSync(config, ['healthCheck:', '  interval: 100ms', '  fall: 2', '  rise: 5', 'greetingTimeout: 3s', `admin: 127.0.0.1:${adminPort}`, 'listeners:', '  - listen: 127.0.0.1:1', '    backends: ["127.0.0.1:2"]', ''].join('\n'));
  const p = spawn(process.execPath, [script, 'lb', '--config', config, '--listen', `127.0.0.1:${smtp}=smtp`, '--backend', `127.0.0.1:${mta.port}`, '--backend', `127.0.0.1:${other}`, '--listen', `127.0.0.1:${http}=tcp`, '--backend', `127.0.0.1:${mta.port}`, '--rise', '3'], { stdio: 'ignore' });
  proc = p;
  const admin = `http://127.0.0.1:${adminPort}`;
  await until('lb up', async () => (await fetch(`${admin}/healthz`).catch(() => undefined))?.ok === true);
  type Status = { listeners: { name: string; mode: string; listen: string; backends: { address: string; up: boolean; lastCheck?: { ok: boolean } }[] }[] };
  // fall 2 at 100 ms from the file: the dead backend is out quickly.
  await until('dead backend out', async () => ((await (await fetch(`${admin}/status`)).json()) as Status).listeners[0].backends[1].up === false, 5000);
  const st = (await (await fetch(`${admin}/status`)).json()) as Status;
  expect(st.listeners.map((l) => [l.name, l.mode, l.listen, l.backends.map((b) => b.address)])).toEqual([
    [`smtp-${smtp}`, 'smtp', `127.0.0.1:${smtp}`, [`127.0.0.1:${mta.port}`, `127.0.0.1:${other}`]],
    [`tcp-${http}`, 'tcp', `127.0.0.1:${http}`, [`127.0.0.1:${mta.port}`]],
  ]);
  expect((await fetch(`${admin}/readyz`)).status).toBe(200);
  const c = await SmtpDialog.open(http);
  expect((await c.reply()).text).toMatch(/^mta-a /);
  await c.quit();
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
});
