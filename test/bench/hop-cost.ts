// What one hop costs on this machine, apart from any Volley code: a Node
// process echoes 2 KB messages back over TLS on loopback (a proxy link's
// shape), one message at a time, and we read the echo side's CPU per
// message twice: back to back (it never sleeps), and paced at a rate a
// lightly loaded hop sees (between messages it sleeps, and is woken for the
// next). The second figure is several times the first on the 2-core VM the
// benches run on: a process woken from sleep pays for it (the switch in, the
// caches other processes used meanwhile) whatever it then does. That is why
// a hop's CPU a message falls as its load rises (the proxy's curve in
// test/bench/README.md), and why a design that spreads the same load over
// more processes (workers, hops, mirror daemons) costs more CPU a message
// here. Run alone: `npx tsx test/bench/hop-cost.ts`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type TLSSocket } from 'node:tls';
import { proxyTls } from '../helpers/proxy-fixtures';
import { processUsage } from './mta-metrics';

export interface HopCost {
  /** The echo side's CPU a message, µs, messages back to back. */
  backToBackUs: number;
  /** The same, paced at `pacedRate` messages a second. */
  pacedUs: number;
  pacedRate: number;
}

/** The echo side, in a child process: a TLS client writing back every byte it reads. */
const ECHO = `const s = require('node:tls').connect({ host: '127.0.0.1', port: Number(process.argv[1]), rejectUnauthorized: false }); s.setNoDelay(true); s.on('data', (d) => s.write(d)); s.on('close', () => process.exit(0)); s.on('error', () => process.exit(1));`;

const SIZE = 2048;

export async function measureHopCost(opts: { messages?: number; pacedRate?: number } = {}): Promise<HopCost> {
  const messages = opts.messages ?? 5000;
  const pacedRate = opts.pacedRate ?? 700;
  const dir = mkdtempSync(join(tmpdir(), 'volley-hop-'));
  const tls = await proxyTls(dir);
  const server = createServer({ key: tls.key, cert: tls.cert });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<TLSSocket>((resolve) => server.once('secureConnection', resolve));
  const child = spawn(process.execPath, ['-e', ECHO, String((server.address() as { port: number }).port)], { stdio: 'ignore' });
  try {
    const socket = await accepted;
    socket.setNoDelay(true);
    const data = Buffer.alloc(SIZE, 'x');
    const trip = (): Promise<void> =>
      new Promise((resolve) => {
        let owed = SIZE;
        const onData = (d: Buffer): void => {
          owed -= d.length;
          if (owed > 0) return;
          socket.off('data', onData);
          resolve();
        };
        socket.on('data', onData);
        socket.write(data);
      });
    /** The echo's CPU µs a message over `n` trips, each started no sooner than 1/rate after the one before (rate 0: at once). */
    const run = async (n: number, rate: number): Promise<number> => {
      const before = processUsage([child.pid!]).cpuSeconds;
      const start = Date.now();
      for (let i = 0; i < n; i++) {
        await trip();
        const wait = rate > 0 ? start + ((i + 1) * 1000) / rate - Date.now() : 0;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      return Math.round(((processUsage([child.pid!]).cpuSeconds - before) * 1e6) / n);
    };
    await run(1000, 0); // warm-up: both sides compiled
    const backToBackUs = await run(messages, 0);
    const pacedUs = await run(Math.round(pacedRate * 3), pacedRate);
    socket.destroy();
    return { backToBackUs, pacedUs, pacedRate };
  } finally {
    child.kill('SIGKILL');
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  void measureHopCost().then((r) => console.log(`one TLS hop echoing 2 KB messages: ${r.backToBackUs} us CPU a message back to back, ${r.pacedUs} us at ${r.pacedRate} a second`));
}
