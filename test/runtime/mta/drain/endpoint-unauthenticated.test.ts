// What the drain endpoint spends on a client that does not hold the drain
// secret (in process, real HTTPS on loopback): a request whose headers
// cannot carry a valid signature is refused before its body is read, so it
// never has max_batch_bytes held for it, and a connection that falls silent
// mid-request is closed after the idle timeout. Apart from endpoint.test.ts, which
// covers the protocol's answers, because this is about the endpoint's bounds.
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { DrainEndpoint } from '../../../../runtime/mta/drain/endpoint';
import { HEADER_NODE, HEADER_SIGNATURE, HEADER_TIME } from '../../../../runtime/mta/drain/protocol';
import { SeenIds } from '../../../../runtime/mta/drain/seen-ids';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { loadTls } from '../../../../runtime/shared/tls-files';
import { testConfigYaml } from '../../../helpers/config';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const SECRET = Buffer.from('drain-secret-for-tests-0123456789abcdef');
let seen: SeenIds;
let endpoint: DrainEndpoint;
const stored: string[] = [];
const sockets: TLSSocket[] = [];

beforeAll(async () => {
  const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.0/8], max_batch_bytes: 64KB }\n`).drain!;
  seen = await SeenIds.open(join(dir, 'seen.log'), config.dedupeRetentionMs, { fsync: false });
  endpoint = new DrainEndpoint({
    config,
    nodeId: 'destination',
    secrets: [SECRET],
    tls: await loadTls(undefined, dir, 'localhost'),
    seen,
    store: async (records) => records.map((r) => (stored.push(r.header.id), { status: 'queued' as const })),
    unavailable: () => undefined,
    logger: pino({ level: 'silent' }),
    // Short here: the test waits for it (production: DRAIN_IDLE_CLOSE_MS, ten minutes).
    idleTimeoutMs: 300,
  });
  await endpoint.listen({ address: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await endpoint.close();
  await seen.close();
});

/** Opens a TLS connection and sends `head` (request line and headers) and nothing more; `text()` is what came back so far. */
async function sendHeadOnly(head: string): Promise<{ text: () => string; closed: () => boolean }> {
  const socket = connect({ host: '127.0.0.1', port: endpoint.port, rejectUnauthorized: false });
  sockets.push(socket);
  let text = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
  socket.write(head);
  return { text: () => text, closed: () => closed };
}

test('an unsigned request is answered 401 at once, without waiting for (and holding) its body', async () => {
  const c = await sendHeadOnly('POST /drain/v1/messages HTTP/1.1\r\nHost: destination\r\nContent-Length: 60000\r\n\r\n');
  await waitUntil(() => c.text().includes('\r\n\r\n'), 5000, () => c.text());
  expect(c.text()).toMatch(/^HTTP\/1\.1 401 /);
  expect(c.text()).toContain('"code":"missing"');
  expect(stored).toEqual([]);
});

test('a request whose time is outside the clock window is answered 401 stale at once, body unread', async () => {
  const old = Math.floor(Date.now() / 1000) - 3600;
  const c = await sendHeadOnly(`POST /drain/v1/messages HTTP/1.1\r\nHost: destination\r\nContent-Length: 60000\r\n${HEADER_NODE}: source\r\n${HEADER_TIME}: ${old}\r\n${HEADER_SIGNATURE}: v1=${'0'.repeat(64)}\r\n\r\n`);
  await waitUntil(() => c.text().includes('\r\n\r\n'), 5000, () => c.text());
  expect(c.text()).toMatch(/^HTTP\/1\.1 401 /);
  expect(c.text()).toContain('"code":"stale"');
  expect(stored).toEqual([]);
});

test('a request with plausible signature headers whose body stalls is closed after the idle timeout, not held for ever', async () => {
  const now = Math.floor(Date.now() / 1000);
  const c = await sendHeadOnly(`POST /drain/v1/messages HTTP/1.1\r\nHost: destination\r\nContent-Length: 60000\r\n${HEADER_NODE}: source\r\n${HEADER_TIME}: ${now}\r\n${HEADER_SIGNATURE}: v1=${'0'.repeat(64)}\r\n\r\n${'x'.repeat(1000)}`);
  await waitUntil(() => c.closed(), 5000, () => `open; received: ${c.text()}`);
  expect(c.text()).toBe('');
  expect(stored).toEqual([]);
});
