import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  buildMasterCf,
  measurePostfixIntake,
  measurePostfixRelay,
  startPostfix,
  type PostfixInstance,
} from '../bench/postfix';
import { pidsWithEnv, runSmtpSource, startSmtpSink, type SmtpSinkHandle } from './postfix-tools';

/** A minimal SMTP client from a chosen loopback source address; returns the reply codes. */
async function smtpSend(port: number, localAddress: string, helo: string, body: string): Promise<string[]> {
  const sock = net.connect({ host: '127.0.0.1', port, localAddress });
  sock.setEncoding('latin1');
  let buf = '';
  const finals: string[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (/^\d{3}( |$)/.test(line)) finals.push(line);
    }
    wake?.();
  });
  let seen = 0;
  const reply = async (): Promise<string> => {
    while (finals.length <= seen) await new Promise<void>((r) => (wake = r));
    return finals[seen++]!.slice(0, 3);
  };
  const codes = [await reply()];
  for (const cmd of [`EHLO ${helo}`, 'MAIL FROM:<a@src.example>', 'RCPT TO:<b@dst.example>', 'DATA']) {
    sock.write(`${cmd}\r\n`);
    codes.push(await reply());
  }
  sock.write(`${body}\r\n.\r\n`);
  codes.push(await reply());
  sock.write('QUIT\r\n');
  codes.push(await reply());
  sock.destroy();
  return codes;
}

describe('smtp-source / smtp-sink wrappers', () => {
  let sink: SmtpSinkHandle | null = null;
  let tmp: string | null = null;
  afterEach(async () => {
    await sink?.stop();
    sink = null;
    if (tmp) await rm(tmp, { recursive: true, force: true });
    tmp = null;
  });

  test('200 messages on 10 sessions: one connection per message, exact counts', async () => {
    sink = await startSmtpSink({ countConnections: true });
    const r = await runSmtpSource({ port: sink.port, messages: 200, sessions: 10, sizeBytes: 2048 });
    expect(r.exitCode).toBe(0);
    expect(r.elapsedMs).toBeGreaterThan(0);
    await sink.waitFor((c) => c.messages >= 200 && c.sessionsEnded >= 200, 10_000);
    const final = await sink.stop();
    expect(final).toEqual({ messages: 200, sessionsEnded: 200, quits: 200, connections: 200 });
  });

  test('reuseConnection (-d) sends every message of a session over one connection', async () => {
    sink = await startSmtpSink({ countConnections: true });
    const r = await runSmtpSource({ port: sink.port, messages: 200, sessions: 10, reuseConnection: true });
    expect(r.exitCode).toBe(0);
    await sink.waitFor((c) => c.messages >= 200 && c.sessionsEnded >= 10, 10_000);
    expect(await sink.stop()).toEqual({ messages: 200, sessionsEnded: 10, quits: 10, connections: 10 });
  });

  test('smtp-source reports failure when the server rejects', async () => {
    sink = await startSmtpSink({ extraArgs: ['-r', 'rcpt'] });
    const r = await runSmtpSource({ port: sink.port, messages: 3 });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/450/);
    expect(sink.messages()).toBe(0);
  });

  test('dumps record client address, HELO, envelope and the message', async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'sink-dump-'));
    sink = await startSmtpSink({ dumpDir: tmp });
    const r = await runSmtpSource({
      port: sink.port,
      messages: 3,
      sessions: 3,
      sizeBytes: 2048,
      heloName: 'source.example',
      from: 'me@from.example',
      to: 'you@to.example',
      subject: 'dump test',
    });
    expect(r.exitCode).toBe(0);
    await sink.waitForMessages(3, 10_000);
    const dumps = await sink.readDumps();
    expect(dumps).toHaveLength(3);
    for (const d of dumps) {
      expect(d.clientAddr).toBe('127.0.0.1');
      expect(d.helo).toBe('source.example');
      expect(d.mailFrom).toBe('<me@from.example>');
      expect(d.rcptTo).toEqual(['<you@to.example>']);
      expect(d.content).toMatch(/^From: <me@from.example>\n/m);
      expect(d.content).toMatch(/^Subject: dump test$/m);
      expect(d.content.length).toBeGreaterThan(2048);
    }
  });

  test('holdMs 300 (proxy) holds each end-of-data reply and keeps the client address', async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'sink-dump-'));
    sink = await startSmtpSink({ holdMs: 300, countConnections: true, dumpDir: tmp });
    expect(sink.holdMode).toBe('proxy');
    // 6 messages, 2 at a time: 3 holds in a row per session.
    const r = await runSmtpSource({ port: sink.port, messages: 6, sessions: 2, sizeBytes: 100 });
    expect(r.exitCode).toBe(0);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(900);
    expect(r.elapsedMs).toBeLessThan(3000);
    const t0 = Date.now();
    expect(await smtpSend(sink.port, '127.0.0.2', 'second.example', 'Subject: x\r\n\r\nhi')).toEqual([
      '220',
      '250',
      '250',
      '250',
      '354',
      '250',
      '221',
    ]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    await sink.waitFor((c) => c.messages >= 7 && c.sessionsEnded >= 7, 5000);
    const dumps = await sink.readDumps();
    expect(dumps.map((d) => d.clientAddr).sort()).toEqual([...Array(6).fill('127.0.0.1'), '127.0.0.2']);
    expect(await sink.stop()).toEqual({ messages: 7, sessionsEnded: 7, quits: 7, connections: 7 });
  });

  test('whole-second holds use smtp-sink -W .:N', async () => {
    sink = await startSmtpSink({ holdMs: 1000 });
    expect(sink.holdMode).toBe('smtp-sink');
    expect(sink.args).toEqual(expect.arrayContaining(['-W', '.:1']));
    const r = await runSmtpSource({ port: sink.port, messages: 2, sessions: 2 });
    expect(r.exitCode).toBe(0);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(950);
    expect(r.elapsedMs).toBeLessThan(1900); // the two sessions are held in parallel
  });
});

describe('private Postfix instance', () => {
  test('master.cf: smtpd on 127.0.0.1:PORT, chroot off, nothing else changed', () => {
    const dist = [
      '# comment',
      'smtp      inet  n       -       y       -       -       smtpd',
      'pickup    unix  n       -       y       60      1       pickup',
      '  -o syslog_name=x',
      'local     unix  -       n       n       -       -       local',
    ].join('\n');
    expect(buildMasterCf(dist, 2525).split('\n')).toEqual([
      '# comment',
      '127.0.0.1:2525  inet  n  -  n  -  -  smtpd',
      'pickup  unix  n  -  n  60  1  pickup',
      '  -o syslog_name=x',
      'local  unix  -  n  n  -  -  local',
    ]);
    expect(() => buildMasterCf('local unix - n n - - local', 1)).toThrow(/smtp inet/);
  });

  test('starts, accepts and relays 100 messages to a sink, then stops cleanly', async () => {
    const sink = await startSmtpSink();
    let pf: PostfixInstance | null = null;
    try {
      pf = await startPostfix({ delivery: 'relay', relayPort: sink.port });
      expect(pf.mainCf.relayhost).toBe(`[127.0.0.1]:${sink.port}`);
      const r = await runSmtpSource({
        port: pf.port,
        messages: 100,
        sessions: 20,
        sizeBytes: 2048,
        to: 'rcpt@relay.example',
      });
      expect(r.exitCode).toBe(0);
      await sink.waitForMessages(100, 20_000);
      // Postfix removes each queue file once the sink acknowledged it.
      for (let i = 0; i < 50 && pf.queueSize() > 0; i++) await new Promise((res) => setTimeout(res, 100));
      expect(pf.queueSize()).toBe(0);
      expect(sink.messages()).toBe(100);
      const { configDir, dir } = pf;
      expect(pidsWithEnv('MAIL_CONFIG', configDir).length).toBeGreaterThan(0);
      await pf.stop();
      pf = null;
      expect(pidsWithEnv('MAIL_CONFIG', configDir)).toEqual([]);
      expect(existsSync(dir)).toBe(false);
    } finally {
      await pf?.stop();
      await sink.stop();
    }
    expect(sink.counts().messages).toBe(100);
  });

  test('measurePostfixIntake and measurePostfixRelay return rates', async () => {
    const intake = await measurePostfixIntake({ messages: 100, sessions: 20, sizeBytes: 2048, warmupMessages: 20 });
    expect(intake.messages).toBe(100);
    expect(intake.msgsPerSec).toBeGreaterThan(0);
    expect(intake.msgsPerSec).toBeCloseTo(100 / (intake.elapsedMs / 1000), 6);
    const relay = await measurePostfixRelay({ messages: 100, sessions: 20, sizeBytes: 2048, warmupMessages: 20 });
    expect(relay.msgsPerSec).toBeGreaterThan(0);
    expect(relay.elapsedMs).toBeGreaterThan(0);
    expect(relay.sinkHoldMode).toBe('none');
  });
});
