import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import type { SecureContext } from 'node:tls';
import pino from 'pino';
import { Command } from 'commander';
import { registerHaproxyConfig } from '../../../../../bin/commands/haproxy-config';
import { haproxyConfig } from '../../../../../runtime/mta/delivery/connect/haproxy-config';
import { HaproxyConnector, proxyHeaderV1, proxyHeaderV2 } from '../../../../../runtime/mta/delivery/connect/haproxy-connector';
import { parseProxyHeader } from '../../../../../runtime/shared/proxy-header';
import { loadConfig } from '../../../../../runtime/shared/config/load';
import type { VolleyConfig } from '../../../../../runtime/shared/config/types';
import { RFC5321_CLIENT_TIMEOUTS } from '../../../../../runtime/shared/smtp/client';
import { ConnectError, type TlsRequirement } from '../../../../../runtime/shared/smtp/connector';
import { mxTrust } from '../../../../../runtime/shared/smtp/mx-trust';
import { RoutingConnector } from '../../../../../runtime/mta/delivery/connect/routing-connector';
import { createTestCa } from '../../../../helpers/test-ca';
import { testConfigYaml } from '../../../../helpers/config';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { startTlsMx } from '../../../../helpers/starttls-mx';
import { tempDir } from '../../../../helpers/tmp';
import { waitUntil } from '../../../../helpers/proxy-fixtures';

// HAProxy mode against the real HAProxy 2.6 (Debian's /usr/sbin/haproxy),
// started here in the foreground on high loopback ports with the config
// `volley haproxy-config` generates.

const HAPROXY = '/usr/sbin/haproxy';
const caDir = tempDir('volley-haproxy-ca-');
const timeouts = { ...RFC5321_CLIENT_TIMEOUTS, connectMs: 3000, greetingMs: 5000, commandMs: 5000 };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** True when something accepts a connection on `port` now. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      s.destroy();
      resolve(false);
    });
  });
}

const waitForPort = (port: number, timeoutMs = 5000): Promise<void> => waitUntil(() => listening(port), timeoutMs, () => `nothing listens on ${port}`);

const message = (subject: string): Buffer => Buffer.from(`From: a@example.com\r\nTo: b@example.net\r\nSubject: ${subject}\r\n\r\nhello\r\n`);

describe('PROXY headers', () => {
  it('v1 and v2 name the sending IP as source and the MX as destination', () => {
    const e = { srcIp: '127.0.0.2', srcPort: 40000, dstIp: '192.0.2.25', dstPort: 25 };
    expect(proxyHeaderV1(e).toString()).toBe('PROXY TCP4 127.0.0.2 192.0.2.25 40000 25\r\n');
    const v2 = proxyHeaderV2(e);
    expect(parseProxyHeader(v2)).toEqual({ done: true, info: { sourceAddress: '127.0.0.2', sourcePort: 40000 }, consumed: 28 });
    expect([...v2.subarray(20, 24)]).toEqual([192, 0, 2, 25]);
    expect(v2.readUInt16BE(26)).toBe(25);
    // Mixed families: the IPv4 side becomes IPv4-mapped.
    expect(proxyHeaderV1({ ...e, dstIp: '2001:db8::25' }).toString()).toBe('PROXY TCP6 ::ffff:127.0.0.2 2001:db8::25 40000 25\r\n');
    const v2six = proxyHeaderV2({ ...e, dstIp: '2001:db8::25' });
    expect(v2six[13]).toBe(0x21);
    expect(v2six.subarray(32, 48).toString('hex')).toBe('20010db8000000000000000000000025');
  });
});

describe('HAProxy mode against a real HAProxy', () => {
  const dir = tempDir('volley-haproxy-');
  let config: VolleyConfig;
  let cfgFile: string;
  let haproxy: ChildProcess | undefined;
  let haproxyLog = '';
  const mx = new ScriptedMx();
  const rejectingMx = new ScriptedMx({ greeting: [554, 'go away'] });
  let mxPort = 0;
  let rejectingPort = 0;
  let closedPort = 0;
  let downPort = 0;
  let ports: number[] = [];

  beforeAll(async () => {
    mxPort = await mx.listen();
    rejectingPort = await rejectingMx.listen();
    ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    closedPort = await freePort();
    downPort = await freePort();
    const yaml = testConfigYaml({
      extra: `haproxy:
  frontends:
    - { sending_ip: 127.0.0.2, address: "127.0.0.1:${ports[0]}" }
    - { sending_ip: 127.0.0.3, address: "127.0.0.1:${ports[1]}", proxy_protocol: v1 }
    - { sending_ip: 127.0.0.4, address: "127.0.0.1:${ports[2]}", proxy_protocol: v2 }
    - { sending_ip: 127.0.0.5, address: "127.0.0.1:${ports[3]}", proxy_protocol: v2 }
`,
    });
    const volleyFile = join(dir, 'volley.yaml');
    writeFileSync(volleyFile, yaml);
    config = loadConfig(volleyFile);
    cfgFile = join(dir, 'haproxy.cfg');
    // Generated through the CLI verb, as an operator would.
    const program = new Command().exitOverride();
    registerHaproxyConfig(program);
    const out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await program.parseAsync(['haproxy-config', '--config', volleyFile, '--out', cfgFile], { from: 'user' });
    } finally {
      out.mockRestore();
    }
    haproxy = spawn(HAPROXY, ['-f', cfgFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d: Buffer) => (haproxyLog += d.toString()));
    haproxy.stderr!.on('data', (d: Buffer) => (haproxyLog += d.toString()));
    await Promise.all(ports.map((p) => waitForPort(p))).catch((err: Error) => {
      throw new Error(`${err.message}; haproxy said: ${haproxyLog}`);
    });
  });

  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((r) => haproxy!.once('exit', r));
      haproxy.kill('SIGTERM');
      await exited;
    }
    await mx.close();
    await rejectingMx.close();
  });

  it('the generated config is what `haproxy -c` accepts, and matches the generator', () => {
    const text = readFileSync(cfgFile, 'utf8');
    expect(text).toBe(haproxyConfig(config));
    expect(text).toContain(`bind 127.0.0.1:${ports[0]} accept-proxy`);
    expect(text).toContain('server mx 0.0.0.0 source 127.0.0.2');
    const check = spawnSync(HAPROXY, ['-c', '-f', cfgFile], { encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toContain('Configuration file is valid');
    expect(check.status).toBe(0);
  });

  it('delivers through each frontend from its sending IP, with v1 and v2 headers', async () => {
    const connector = new HaproxyConnector(config.haproxy!.frontends, timeouts);
    const cases = [
      { ip: '127.0.0.2', helo: 'two.test.example', proto: 'v1', port: ports[0] },
      { ip: '127.0.0.3', helo: 'three.test.example', proto: 'v1', port: ports[1] },
      { ip: '127.0.0.4', helo: 'four.test.example', proto: 'v2', port: ports[2] },
      { ip: '127.0.0.5', helo: 'five.test.example', proto: 'v2', port: ports[3] },
    ];
    for (const c of cases) {
      expect(connector.frontendFor(c.ip)?.proxyProtocol).toBe(c.proto);
      const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mxPort }, { ip: c.ip, helo: c.helo }, { mode: 'may', policy: 'may' });
      expect(session.info.via).toBe(`haproxy:127.0.0.1:${c.port}`);
      expect(session.info.localIp).toBe(c.ip);
      expect(session.info.mxIp).toBe('127.0.0.1');
      expect(session.info.port).toBe(mxPort);
      const result = await session.send('a@example.com', [`to-${c.ip}@example.net`], message(c.ip));
      expect(result.recipients[0].outcome).toBe('delivered');
      session.close();
    }
    await mx.waitFor(cases.length);
    for (const c of cases) {
      const m = mx.messages.find((x) => x.to[0] === `to-${c.ip}@example.net`)!;
      expect(m.clientIp).toBe(c.ip);
      expect(m.helo).toBe(c.helo);
      expect(m.body).toContain(`Subject: ${c.ip}`);
    }
  });

  it('carries several transactions over one session', async () => {
    const connector = new HaproxyConnector(config.haproxy!.frontends, timeouts);
    const before = mx.messages.length;
    const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mxPort }, { ip: '127.0.0.3', helo: 'three.test.example' }, { mode: 'none', policy: 'none' });
    for (let i = 0; i < 3; i++) expect((await session.send('a@example.com', [`multi${i}@example.net`], message(`m${i}`))).recipients[0].outcome).toBe('delivered');
    session.close();
    await mx.waitFor(before + 3);
    expect(mx.messages.slice(before).every((m) => m.clientIp === '127.0.0.3')).toBe(true);
  });

  it('under may, a failed handshake is retried in clear through the frontend, with a new PROXY header', async () => {
    const broken = await startTlsMx({ starttls: 'garbage' });
    try {
      const connector = new HaproxyConnector(config.haproxy!.frontends, timeouts);
      const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: broken.port }, { ip: '127.0.0.4', helo: 'four.test.example' }, { mode: 'may', policy: 'may' });
      expect(session.info).toMatchObject({ via: expect.stringMatching(/^haproxy:/), tls: { policy: 'may', verified: false, failure: 'validation-failure' } });
      expect((await session.send('a@example.com', ['clear@example.net'], message('clear'))).recipients[0].outcome).toBe('delivered');
      session.close();
      expect(broken.connections).toHaveLength(2);
      expect(broken.messages).toEqual([expect.objectContaining({ tls: false })]);
    } finally {
      await broken.close();
    }
  });

  it('a frontend that is down is refused; a sending IP without a frontend is not hosted', async () => {
    const connector = new HaproxyConnector([{ sendingIp: '127.0.0.9', host: '127.0.0.1', port: downPort, proxyProtocol: 'v1' }, ...config.haproxy!.frontends], timeouts);
    await expect(connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mxPort }, { ip: '127.0.0.9', helo: 'x' }, { mode: 'none', policy: 'none' })).rejects.toMatchObject({ kind: 'refused' });
    await expect(connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mxPort }, { ip: '127.0.0.7', helo: 'x' }, { mode: 'none', policy: 'none' })).rejects.toMatchObject({ kind: 'ip-not-hosted' });
    await expect(connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mxPort }, { helo: 'x' }, { mode: 'none', policy: 'none' })).rejects.toMatchObject({ kind: 'ip-not-hosted' });
  });

  it('an MX that refuses the connection: HAProxy closes without a greeting (closed-before-greeting), and HAProxy stays up', async () => {
    const connector = new HaproxyConnector(config.haproxy!.frontends, timeouts);
    for (const ip of ['127.0.0.2', '127.0.0.4']) {
      // Not a wait for a timeout: that would be greeting-timeout, not closed-before-greeting.
      const err = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: closedPort }, { ip, helo: 'x' }, { mode: 'none', policy: 'none' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).kind).toBe('closed-before-greeting');
    }
    expect(haproxy!.exitCode).toBeNull();
  });

  it('an MX that answers the greeting with 554 is greeting-rejected, as on the direct path', async () => {
    const connector = new HaproxyConnector(config.haproxy!.frontends, timeouts);
    const err = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: rejectingPort }, { ip: '127.0.0.5', helo: 'x' }, { mode: 'none', policy: 'none' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).kind).toBe('greeting-rejected');
    expect((err as ConnectError).reply?.code).toBe(554);
    // The connection did reach the MX from the sending IP.
    expect(rejectingMx.connections).toBe(1);
  });

  it('a verify session through a frontend trusts delivery.tls_ca_file (the RoutingConnector hands it on), and fails as not trusted without it', async () => {
    const ca = createTestCa(caDir, 'MX CA');
    const tlsMx = new ScriptedMx({ tls: ca.issue(['mx.trust.test']) });
    await tlsMx.listen();
    try {
      const routing = (trust?: SecureContext): RoutingConnector => new RoutingConnector({ haproxy: config.haproxy, timeouts, logger: pino({ level: 'silent' }), name: 'test', trust });
      const t = { host: 'mx.trust.test', ip: '127.0.0.1', port: tlsMx.port };
      const verify: TlsRequirement = { mode: 'verify', policy: 'verify', names: ['mx.trust.test'] };
      await expect(routing().open(t, { ip: '127.0.0.2', helo: 'two.test.example' }, verify)).rejects.toMatchObject({ kind: 'tls-required', tls: { verified: false, failure: 'certificate-not-trusted' } });
      const session = await routing(mxTrust(ca.caFile, 'delivery.tls_ca_file')).open(t, { ip: '127.0.0.2', helo: 'two.test.example' }, verify);
      expect(session.info).toMatchObject({ via: expect.stringMatching(/^haproxy:/), tls: { policy: 'verify', verified: true } });
      session.close();
    } finally {
      await tlsMx.close();
    }
  });

  it('HAProxy logged nothing alarming', () => {
    expect(haproxyLog).not.toMatch(/\[ALERT\]/);
  });
});
