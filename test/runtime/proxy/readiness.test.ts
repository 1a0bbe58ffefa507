// proxyReadiness against a real ProxyServer: not ready before its listener is
// bound, ready after; the real bind probe on loopback sending IPs.
import { ProxyServer } from '../../../runtime/proxy/server';
import { bindProbe, proxyReadiness } from '../../../runtime/proxy/readiness';
import { captureLogger, newSecret, proxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-proxy-readiness-');

test('not ready until the MTA listener is bound, then ready; not ready again once stopped', async () => {
  const tls = await proxyTls(dir);
  const server = new ProxyServer({ name: 'r', listen: { address: '127.0.0.1', port: 0 }, tls, secret: newSecret(), sendingIps: ['127.0.0.2', '127.0.0.3'], idleTimeoutMs: 1_000, maxTransactionsPerSession: 10, logger: captureLogger().logger });
  expect(await proxyReadiness(server)).toEqual({ ok: false, reasons: ['the MTA listener is not bound yet'] });
  await server.start();
  try {
    expect(await proxyReadiness(server)).toEqual({ ok: true, reasons: [] });
  } finally {
    await server.stop();
  }
  expect(await proxyReadiness(server)).toEqual({ ok: false, reasons: ['the proxy is stopping'] });
});

test('the bind probe binds loopback sending IPs, and says false for what is not an address', async () => {
  expect(await bindProbe('127.0.0.2')).toBe(true);
  expect(await bindProbe('127.0.0.5')).toBe(true);
  // Not an address: false at once, never a name lookup.
  expect(await bindProbe('proxy.invalid')).toBe(false);
});
