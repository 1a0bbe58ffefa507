// The proxy issue's cluster-limit test again, with the proxy node at
// `--workers 2` (real processes: 3 MTAs, one proxy node of a primary and two
// workers, one MX). Each MTA's control link is pinned first: MTA 0's on one
// worker, MTA 1's on the other (the other worker SIGSTOPped while it dials),
// so the limit can hold only if both workers ask the same node-wide
// authority, and the MX sees one connection only if a worker's idle session
// is QUIT before another worker opens one. Run twice: MTAs of one worker,
// and MTAs of two (issue 20: "with --workers 2 on both"), whose workers each
// hold a control link of their own to the proxy node.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../helpers/config';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { newSecret, proxyTls } from '../../helpers/proxy-fixtures';
import { startProxyProcess, type ProxyProcess } from '../../helpers/proxy-process';
import { ScriptedMx } from '../../helpers/scripted-mx';
import { inject, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-proxy-cluster-workers-');

describe.each([1, 2])('MTAs at --workers %i', (mtaWorkers) => {
  const slowMx = new ScriptedMx({ holdMs: 150 });
  const pinMx = new ScriptedMx();
  const mtas: MtaProcess[] = [];
  let proxy: ProxyProcess;

  beforeAll(async () => {
    await slowMx.listen();
    await pinMx.listen();
    const secretFile = join(dir, `secret-${mtaWorkers}`);
    writeFileSync(secretFile, newSecret(), { mode: 0o600 });
    const pdir = join(dir, `proxy-${mtaWorkers}`);
    mkdirSync(pdir);
    const tls = await proxyTls(pdir);
    const port = await getFreePort();
    const proxyConfig = join(pdir, 'proxy.yaml');
    writeFileSync(proxyConfig, `name: proxy-w\nlisten: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\nsecret_file: ${secretFile}\nsending_ips: [127.0.0.4]\nidle_timeout: 30s\n`);
    proxy = await startProxyProcess(proxyConfig, 2);
    const config = join(dir, `volley-${mtaWorkers}.yaml`);
    writeFileSync(
      config,
      deliveryConfigYaml(`vmtas:
  - { name: ip-4, ip: 127.0.0.4, helo: ip4.mta.test }
routes:
  - { domain: one.test, host: 127.0.0.1, port: ${slowMx.port} }
  - { domain: "*", host: 127.0.0.1, port: ${pinMx.port} }
proxies:
  secret_file: ${secretFile}
  servers:
    - { name: proxy-w, address: "127.0.0.1:${port}", fingerprint: "${tls.fingerprint}", sending_ips: [127.0.0.4] }
throttles:
  - { destination: one.test, max_connections: 1 }
delivery: { retry: [1s], greeting_timeout: 1s }
`),
    );
    for (let i = 0; i < 3; i++) mtas.push(await startMta({ configPath: config, persistentPath: join(dir, `mta-${mtaWorkers}-${i}`), workers: mtaWorkers }));
  }, 90_000);

  afterAll(async () => {
    for (const m of mtas) await m.stop();
    await proxy?.stop();
    await slowMx.close();
    await pinMx.close();
  });

  const viaIp4 = (token: string): string => message(token, token, 'X-Volley-VMTA: ip-4\r\n');

  test('with the proxy at --workers 2, a cluster limit of 1 connection holds across 3 MTAs whose control links sit on different proxy workers', async () => {
    const [a, b] = proxy.workerPids();
    expect(proxy.workerPids()).toHaveLength(2);
    // Each MTA's first delivery through the proxy dials its control link (it stays up): MTA 0 on worker a, MTA 1 on worker b.
    for (const [i, w] of [[0, a], [1, b]] as const) {
      await proxy.onlyWorker(w, async () => {
        await inject(mtas[i].smtpPort, 'a@shop.example', [`pin${i}@pin.test`], viaIp4(`pin-${i}`));
        await pinMx.waitFor(i + 1, 20_000);
      });
    }
    await Promise.all(mtas.map((m, i) => Promise.all([0, 1, 2, 3].map((k) => inject(m.smtpPort, 'a@shop.example', [`c${i}${k}@one.test`], viaIp4(`c-${i}-${k}`))))));
    await slowMx.waitFor(12, 45_000);
    expect(slowMx.maxOpen).toBe(1);
    // Every MTA got its turn at the one connection (the limit was shared, not split).
    const byMta = new Set(slowMx.messages.map((m) => /c-(\d)-/.exec(m.body)![1]));
    expect(byMta).toEqual(new Set(['0', '1', '2']));
  }, 90_000);
});
