import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { VOLLEY } from '../helpers/mta-process';
import { getFreePort, registerExitCleanup } from '../helpers/postfix-tools';
import { newSecret, proxyTls } from '../helpers/proxy-fixtures';
import { measureEndToEnd, type E2eResult } from './e2e';

/**
 * The end-to-end load again, with the sending IP held by a
 * `volley proxy` process: smtp-source -> MTA -> proxy -> smtp-sink.
 * The same VMTA (127.0.0.1) as the direct run, so the two compare.
 */
export async function measureThroughProxy(opts: { messages: number; sessions: number; sizeBytes: number; warmupMessages?: number }): Promise<E2eResult> {
  let proxy: ChildProcess | undefined;
  // A failed run exits the bench mid-way: the proxy goes with it.
  const unregister = registerExitCleanup(() => proxy?.kill('SIGKILL'));
  try {
    return await measureEndToEnd({
      ...opts,
      label: 'through one proxy',
      extraConfig: async (dir) => {
        const tls = await proxyTls(dir);
        const secret = join(dir, 'proxy.secret');
        writeFileSync(secret, newSecret(), { mode: 0o600 });
        const port = await getFreePort();
        const config = join(dir, 'proxy.yaml');
        writeFileSync(config, `name: bench-proxy\nlisten: 127.0.0.1:${port}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secret}\nsending_ips: [127.0.0.1]\n`);
        // One worker, as the MTA it shares the two cores with: a second costs CPU per message here (test/bench/README.md, issue 20).
        proxy = spawn(process.execPath, [VOLLEY, 'proxy', '--config', config, '--workers', '1'], { stdio: 'ignore' });
        for (let i = 0; i < 100; i++) {
          const up = await new Promise<boolean>((r) => {
            const s = connect(port, '127.0.0.1');
            s.once('connect', () => (s.destroy(), r(true)));
            s.once('error', () => r(false));
          });
          if (up) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        // The test config's one VMTA (127.0.0.1) is now held by the proxy, so the run compares with the direct one.
        return `proxies:\n  secret_file: ${secret}\n  servers: [{ name: bench-proxy, address: "127.0.0.1:${port}", fingerprint: "${tls.fingerprint}", sending_ips: [127.0.0.1] }]\n`;
      },
    });
  } finally {
    proxy?.kill('SIGTERM');
    unregister();
  }
}
