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
  let proxy: BenchProxy | undefined;
  try {
    return await measureEndToEnd({
      ...opts,
      label: 'through one proxy',
      extraConfig: async (dir) => {
        proxy = await startBenchProxy(dir);
        // The test config's one VMTA (127.0.0.1) is now held by the proxy, so the run compares with the direct one.
        return proxy.mtaConfig;
      },
    });
  } finally {
    proxy?.stop();
  }
}

export interface BenchProxy {
  /** The MTA's `proxies:` section for this proxy. */
  mtaConfig: string;
  /** The proxy's primary (its worker is a child of it), for CPU readings. */
  pid: number;
  /** What an in-process ProxyConnector needs to reach it. */
  endpoint: { host: string; port: number; fingerprint: string };
  secret: Buffer;
  stop(): void;
}

/** A `volley proxy` process holding 127.0.0.1 (the test config's one VMTA), its files under `dir`; up when this resolves. */
export async function startBenchProxy(dir: string): Promise<BenchProxy> {
  const tls = await proxyTls(dir);
  const secret = join(dir, 'proxy.secret');
  const secretBytes = newSecret();
  writeFileSync(secret, secretBytes, { mode: 0o600 });
  const port = await getFreePort();
  const config = join(dir, 'proxy.yaml');
  writeFileSync(config, `name: bench-proxy\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secret}\nsending_ips: [127.0.0.1]\n`);
  // One worker, as the MTA it shares the two cores with: a second costs CPU per message here (test/bench/README.md, issue 20).
  const proxy: ChildProcess = spawn(process.execPath, [VOLLEY, 'proxy', '--config', config, '--workers', '1'], { stdio: 'ignore' });
  // A failed run exits the bench mid-way: the proxy goes with it.
  const unregister = registerExitCleanup(() => proxy.kill('SIGKILL'));
  const stop = (): void => {
    proxy.kill('SIGTERM');
    unregister();
  };
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (up) break;
    if (i >= 100 || proxy.exitCode !== null) {
      stop();
      throw new Error('the bench proxy did not start listening');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    mtaConfig: `proxies:\n  secret_file: ${secret}\n  servers: [{ name: bench-proxy, address: "127.0.0.1:${port}", fingerprint: "${tls.fingerprint}", sending_ips: [127.0.0.1] }]\n`,
    pid: proxy.pid!,
    endpoint: { host: '127.0.0.1', port, fingerprint: tls.fingerprint },
    secret: secretBytes,
    stop,
  };
}
