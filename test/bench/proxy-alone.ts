// The proxy's own CPU per message, away from the rest of the fleet: one
// `volley proxy --workers 1` process, driven by the MTA's ProxyConnector in
// this process over S links to smtp-sink, each link's session sending its
// messages one after the other (paced: at most `ratePerSec` in all, which is
// how the fleet path loads a proxy, ~200-300 msg/s each; or as fast as the
// answers come). CPU of the proxy's processes (primary and worker) from
// /proc. Used to compare two builds of the proxy by pairs (issue 20's
// proxy_cpu_us_per_msg) with less of the neighbours' noise than the fleet.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { ProxyConnector } from '../../runtime/mta/delivery/connect/proxy-connector';
import type { OutboundSession } from '../../runtime/shared/smtp/connector';
import { registerExitCleanup, startSmtpSink } from '../helpers/postfix-tools';
import { proxyTls } from '../helpers/proxy-fixtures';
import { childrenByParent } from '../helpers/procs';
import { processUsage } from './mta-metrics';
import { startBenchProxy } from './proxy';

export interface ProxyAloneResult {
  msgsPerSec: number;
  /** The proxy's processes' CPU (user + system) per message, µs. */
  cpuUsPerMsg: number;
  /** Of which the primary's (the throttle authority, config, admin port). */
  primaryUsPerMsg: number;
}

export async function measureProxyAlone(opts: { messages: number; warmupMessages: number; sessions: number; sizeBytes: number; ratePerSec?: number }): Promise<ProxyAloneResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-proxy-alone-'));
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  const proxy = await startBenchProxy(dir);
  const connector = new ProxyConnector({ proxies: { '127.0.0.1': [proxy.endpoint] }, secret: proxy.secret, logger: pino({ level: 'silent' }) });
  const body = Buffer.from(`Subject: bench\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(Math.max(1, Math.round(opts.sizeBytes / 96))));
  const sessions: OutboundSession[] = [];
  try {
    for (let i = 0; i < opts.sessions; i++) {
      sessions.push(await connector.open({ host: 'sink.test', ip: '127.0.0.1', port: sink.port }, { ip: '127.0.0.1', helo: 'bench.test' }, { mode: 'none', policy: 'none' }));
    }
    const run = (messages: number): Promise<number> =>
      paced(messages, opts, async (i) => {
        const r = await sessions[i].send('bench@volley.test', [`rcpt${i}@sink.test`], body);
        if (r.recipients[0].reply.code !== 250) throw new Error(`the sink answered ${r.recipients[0].reply.code}`);
      });
    await run(opts.warmupMessages);
    const pids = [proxy.pid, ...(childrenByParent().get(proxy.pid) ?? [])];
    const before = processUsage(pids).cpuSeconds;
    const primaryBefore = processUsage([proxy.pid]).cpuSeconds;
    const elapsedMs = await run(opts.messages);
    const perMsg = (seconds: number): number => Math.round((seconds * 1e6) / opts.messages);
    return {
      msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs),
      cpuUsPerMsg: perMsg(processUsage(pids).cpuSeconds - before),
      primaryUsPerMsg: perMsg(processUsage([proxy.pid]).cpuSeconds - primaryBefore),
    };
  } finally {
    for (const s of sessions) s.close();
    connector.close();
    proxy.stop();
    await sink.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

type Load = { sessions: number; ratePerSec?: number };

/** Sends `messages` over `load.sessions` sessions, each one after the other (at most `ratePerSec` in all); resolves with the time taken. */
async function paced(messages: number, load: Load, send: (session: number) => Promise<void>): Promise<number> {
  let left = messages;
  const gapMs = load.ratePerSec ? (1000 * load.sessions) / load.ratePerSec : 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: load.sessions }, async (_, i) => {
      // Staggered, so the paced sessions do not all send in the same turn.
      if (gapMs > 0) await sleep((gapMs * i) / load.sessions);
      while (left > 0) {
        left--;
        const started = Date.now();
        await send(i);
        if (gapMs > 0) await sleep(gapMs - (Date.now() - started));
      }
    }),
  );
  return Date.now() - t0;
}

/**
 * The floor under those figures: bare-relay.ts (a message in over TLS, its
 * envelope and body to smtp-sink, an answer back; the proxy's 3 reads and 3
 * writes, nothing else) under the same load, its CPU per message.
 */
export async function measureBareRelay(opts: { messages: number; warmupMessages: number; sessions: number; sizeBytes: number; ratePerSec?: number }): Promise<ProxyAloneResult> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-bare-relay-'));
  const sink = await startSmtpSink({ maxConnections: 1024, backlog: 1024 });
  const tls = await proxyTls(dir);
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'bare-relay.ts'), tls.keyPath, tls.certPath, String(sink.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const unregister = registerExitCleanup(() => child.kill('SIGKILL'));
  const links: TLSSocket[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('exit', (code) => reject(new Error(`bare relay exited (${code})`)));
    });
    const body = Buffer.from(`Subject: bench\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(Math.max(1, Math.round(opts.sizeBytes / 96))));
    const frame = Buffer.concat([Buffer.alloc(4), body]);
    frame.writeUInt32BE(body.length, 0);
    const answered: (() => void)[] = [];
    for (let i = 0; i < opts.sessions; i++) {
      const link = await new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca: tls.cert, checkServerIdentity: () => undefined }, () => resolve(s));
        s.once('error', reject);
      });
      // Each answer is 200 bytes and there is one message in flight per link.
      let got = 0;
      link.on('data', (d: Buffer) => {
        got += d.length;
        while (got >= 200) {
          got -= 200;
          answered[i]();
        }
      });
      links.push(link);
    }
    const run = (messages: number): Promise<number> =>
      paced(messages, opts, (i) =>
        new Promise<void>((resolve) => {
          answered[i] = resolve;
          links[i].write(frame);
        }),
      );
    await run(opts.warmupMessages);
    const before = processUsage([child.pid!]).cpuSeconds;
    const elapsedMs = await run(opts.messages);
    const cpu = processUsage([child.pid!]).cpuSeconds - before;
    return { msgsPerSec: Math.round((opts.messages * 1000) / elapsedMs), cpuUsPerMsg: Math.round((cpu * 1e6) / opts.messages), primaryUsPerMsg: 0 };
  } finally {
    for (const l of links) l.destroy();
    child.kill('SIGTERM');
    unregister();
    await sink.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}
