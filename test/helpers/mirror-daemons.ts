// Mirror daemons in the test's own process over the real TLS + HMAC link:
// one TLS identity and one link secret for the file's tests, each daemon's
// config the fields every such test shares plus its own YAML, and everything
// a test started stopped after it (newest first). Call at the top of a file
// or a describe block: it registers that scope's beforeAll and afterEach.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMirrorConfig } from '../../runtime/mirror/config';
import { MirrorDaemon } from '../../runtime/mirror/daemon';
import { captureLogger, newSecret, proxyTls, type ProxyTls } from './proxy-fixtures';
import { tempDir } from './tmp';

export type MirrorHooks = ConstructorParameters<typeof MirrorDaemon>[2];

export interface InProcessMirrors {
  readonly base: string;
  /** Undo steps for the running test, run newest first after it. */
  readonly closing: (() => unknown)[];
  tls(): ProxyTls;
  secretFile(): string;
  /** A started daemon on `<base>/<name>` (with spool/p000), listening on `ports.self`, its peer on `ports.peer`; `extra` is YAML added to its config. */
  node(name: string, ports: { self: number; peer: number }, extra?: string, hooks?: MirrorHooks): Promise<{ daemon: MirrorDaemon; root: string; log: ReturnType<typeof captureLogger> }>;
}

export function inProcessMirrors(prefix: string): InProcessMirrors {
  const base = tempDir(prefix);
  const closing: (() => unknown)[] = [];
  let tls: ProxyTls | undefined;
  const secretFile = join(base, 'mirror.secret');
  beforeAll(async () => {
    tls = await proxyTls(base);
    writeFileSync(secretFile, newSecret());
  });
  afterEach(async () => {
    for (const c of closing.splice(0).reverse()) await c();
  });
  const theTls = (): ProxyTls => {
    if (!tls) throw new Error('inProcessMirrors: the TLS identity is made in beforeAll');
    return tls;
  };
  return {
    base,
    closing,
    tls: theTls,
    secretFile: () => secretFile,
    async node(name, ports, extra = '', hooks = {}) {
      const root = join(base, name);
      mkdirSync(join(root, 'spool', 'p000'), { recursive: true });
      const t = theTls();
      const config = parseMirrorConfig(
        `persistent_path: ${root}\nlisten: 127.0.0.1:${ports.self}\npeer: 127.0.0.1:${ports.peer}\ntls: { cert: ${t.certPath}, key: ${t.keyPath} }\npeer_fingerprint: "${t.fingerprint}"\nsecret_file: ${secretFile}\nreconnect_interval: 50ms\n${extra}`,
        join(base, `${name}.yaml`),
      );
      const log = captureLogger();
      const daemon = new MirrorDaemon(config, log.logger, hooks);
      await daemon.start();
      closing.push(() => daemon.stop());
      return { daemon, root, log };
    },
  };
}
