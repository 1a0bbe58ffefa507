// The proxy's own CPU per message, away from the rest of the fleet: one
// `volley proxy --workers 1` process, driven by the MTA's ProxyConnector in
// this process over S links to smtp-sink, each link's session sending its
// messages one after the other (paced: at most `ratePerSec` in all, which is
// how the fleet path loads a proxy, ~200-300 msg/s each; or as fast as the
// answers come). CPU of the proxy's processes (primary and worker) from
// /proc. Used to compare two builds of the proxy by pairs (issue 20's
// proxy_cpu_us_per_msg) with less of the neighbours' noise than the fleet.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ProxyConnector } from '../../runtime/mta/delivery/connect/proxy-connector';
import type { OutboundSession } from '../../runtime/shared/smtp/connector';
import { startSmtpSink } from '../helpers/postfix-tools';
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
    const run = async (messages: number): Promise<number> => {
      let left = messages;
      const gapMs = opts.ratePerSec ? (1000 * opts.sessions) / opts.ratePerSec : 0;
      const t0 = Date.now();
      await Promise.all(
        sessions.map(async (s, i) => {
          // Staggered, so the paced sessions do not all send in the same turn.
          if (gapMs > 0) await sleep((gapMs * i) / opts.sessions);
          for (let n = 0; left > 0; n++) {
            left--;
            const started = Date.now();
            const r = await s.send('bench@volley.test', [`rcpt${i}@sink.test`], body);
            if (r.recipients[0].reply.code !== 250) throw new Error(`the sink answered ${r.recipients[0].reply.code}`);
            if (gapMs > 0) await sleep(gapMs - (Date.now() - started));
          }
        }),
      );
      return Date.now() - t0;
    };
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

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}
