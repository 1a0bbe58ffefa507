import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { HttpApi } from '../../../../runtime/mta/intake/http-api';
import { loadTls } from '../../../../runtime/shared/tls-files';
import { parseConfig } from '../../../../runtime/shared/config/load';
import { TEST_TOKEN, testConfig, testConfigYaml } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
let h: IntakeHarness;
beforeAll(async () => {
  h = await startIntake(testConfig(), dir);
});
afterAll(() => h.close());

async function post(body: string | object, token = TEST_TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${h.httpUrl}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('HTTP submission API', () => {
  test('a rendered message is stored with its envelope, metadata and a MIME body', async () => {
    const r = await post({
      from: 'news@shop.example',
      to: ['x@example.test'],
      cc: ['y@example.test'],
      bcc: ['z@example.test'],
      subject: 'Black Friday',
      text: 'plain',
      html: '<b>rich</b>',
      attachments: [{ filename: 'a.txt', content: Buffer.from('attached').toString('base64') }],
      pool: 'p1',
      metadata: { tenant: 't1', campaign: 'bf', weight: 3 },
    });
    expect(r.status).toBe(200);
    const { envelope, body } = await h.partition.read(h.partition.get(r.json.id as string)!);
    expect(envelope).toMatchObject({ from: 'news@shop.example', to: ['x@example.test', 'y@example.test', 'z@example.test'], via: 'http', pool: 'p1', meta: { tenant: 't1', campaign: 'bf', weight: '3' } });
    // Who submitted: the client's address and the name of the token it used (config: "test").
    expect(envelope.client).toEqual({ ip: '127.0.0.1', user: 'test' });
    const text = body.toString();
    expect(text).toMatch(/^Received: from \[127\.0\.0\.1\]/);
    // Named in the message, so a bounce quoting its headers can be matched without VERP.
    expect(text.split('\r\n\r\n')[0].match(/^x-volley-id:.*$/gim)).toEqual([`X-Volley-Id: ${r.json.id as string}`]);
    expect(text).toContain('Subject: Black Friday');
    expect(text).toContain('multipart/mixed');
    expect(text).not.toMatch(/^Bcc:/m);
    expect(text).not.toMatch(/[^\r]\n/);
  });

  test('a raw message is stored as given, with line ends made CRLF', async () => {
    const r = await post({ from: 'a@example.test', to: ['b@example.test'], raw: 'Subject: raw\n\nline1\nline2\n' });
    expect(r.status).toBe(200);
    const { body } = await h.partition.read(h.partition.get(r.json.id as string)!);
    expect(body.toString()).toMatch(/Subject: raw\r\n\r\nline1\r\nline2\r\n$/);
  });

  test('a batch gets one result per message, field errors named, the good ones stored', async () => {
    const before = h.partition.size;
    const r = await post({
      messages: [
        { from: 'a@example.test', to: ['b@example.test'], subject: 's', text: 't' },
        { from: 'a@example.test', to: ['not-an-address'], subject: 's', text: 't' },
        { from: 'a@example.test', subject: 'no to' },
        { from: 'a@example.test', to: ['b@example.test'], subject: 's', text: 't', vmta: 'nope' },
        { from: 'a@example.test', to: ['b@example.test'], raw: 'x', subject: 'both' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.json.accepted).toBe(1);
    const results = r.json.results as { index: number; id?: string; error?: { code: string; fields?: { field: string }[] } }[];
    expect(results[0].id).toMatch(/^[0-9A-Z]{26}$/);
    expect(results[1].error).toMatchObject({ code: 'bad_recipient', fields: [{ field: 'to' }] });
    expect(results[2].error).toMatchObject({ code: 'invalid_message', fields: [{ field: 'to' }] });
    expect(results[3].error).toMatchObject({ code: 'unknown_vmta', fields: [{ field: 'vmta' }] });
    expect(results[4].error?.fields?.[0].field).toBe('raw');
    expect(h.partition.size).toBe(before + 1);
  });

  test('bad JSON is a 400 with a JSON error', async () => {
    const r = await post('{"from": "a@example.test", "to": [');
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: { code: 'bad_json' } });
  });

  test('a body over the limit is a 413', async () => {
    const r = await post({ from: 'a@example.test', to: ['b@example.test'], raw: 'x'.repeat(300 * 1024) });
    expect(r.status).toBe(413);
    expect(r.json).toMatchObject({ error: { code: 'too_large' } });
  });

  test('a message over the message size limit is a 413 naming the field', async () => {
    const r = await post({ from: 'a@example.test', to: ['b@example.test'], raw: 'Subject: big\r\n\r\n' + ('z'.repeat(900) + '\r\n').repeat(90) });
    expect(r.status).toBe(413);
    expect(r.json).toMatchObject({ error: { code: 'oversize', fields: [{ field: 'raw' }] } });
  });

  test('a wrong or missing token is a 401 and nothing is stored', async () => {
    const before = h.partition.size;
    expect((await post({ from: 'a@example.test', to: ['b@example.test'], raw: 'x' }, 'wrong')).status).toBe(401);
    const res = await fetch(`${h.httpUrl}/v1/messages`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
    expect(h.partition.size).toBe(before);
  });

  test('unknown paths are 404 and other methods 405', async () => {
    expect((await fetch(`${h.httpUrl}/nope`)).status).toBe(404);
    expect((await fetch(`${h.httpUrl}/v1/messages`)).status).toBe(405);
  });
});

// The lb (or HAProxy) in front of the HTTP API sends a PROXY header first.
describe('HTTP API behind a trusted proxy', () => {
  const dir2 = tempDir();
  let h2: IntakeHarness;
  beforeAll(async () => {
    const config = testConfig({ relayFrom: ['127.0.0.0/8'] });
    config.smtp.trustedProxies = ['127.0.0.7/32'];
    h2 = await startIntake(config, dir2);
  });
  afterAll(() => h2.close());

  const body = JSON.stringify({ from: 'a@example.test', to: ['b@example.test'], subject: 's', text: 'via the lb' });
  const request = `POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

  /** Sends `chunks` in turn from `localAddress` and returns the whole response. */
  function raw(localAddress: string, chunks: (string | Buffer)[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const port = Number(new URL(h2.httpUrl).port);
      const s = connect({ host: '127.0.0.1', port, localAddress }, () => {
        for (const c of chunks) s.write(c);
      });
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString('latin1')));
      s.on('close', () => resolve(out));
      s.on('error', reject);
    });
  }

  /** The stored message's Received line, after checking that the envelope names the same client. */
  async function storedReceived(response: string): Promise<string> {
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    const id = (JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { id: string }).id;
    const { envelope, body: stored } = await h2.partition.read(h2.partition.get(id)!);
    const received = stored.toString().split('\r\n')[0];
    expect(received).toContain(`from [${envelope.client?.ip}]`);
    return received;
  }

  test('a PROXY v1 header and the request in one write: 200, and the Received header names the client', async () => {
    const r = await raw('127.0.0.7', [`PROXY TCP4 127.0.0.50 127.0.0.1 40000 8080\r\n${request}`]);
    expect(await storedReceived(r)).toMatch(/^Received: from \[127\.0\.0\.50\]/);
  });

  test('a PROXY v2 header, then the request in another write', async () => {
    const v2 = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]),
      Buffer.from([127, 0, 0, 51, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]),
    ]);
    const r = await raw('127.0.0.7', [v2, request]);
    expect(await storedReceived(r)).toMatch(/^Received: from \[127\.0\.0\.51\]/);
  });

  test('PROXY UNKNOWN (the proxy itself) is served as the proxy\'s own address', async () => {
    const r = await raw('127.0.0.7', ['PROXY UNKNOWN\r\n', request]);
    expect(await storedReceived(r)).toMatch(/^Received: from \[127\.0\.0\.7\]/);
  });

  test('a trusted proxy that sends no PROXY header gets a 400 naming the problem', async () => {
    const r = await raw('127.0.0.7', [request]);
    expect(r).toMatch(/^HTTP\/1\.1 400 /);
    expect(r).toContain('"code":"bad_proxy_header"');
  });

  test('over TLS (http.tls): the PROXY header comes before the handshake, and the client it names is the one recorded', async () => {
    const config = testConfig({ relayFrom: ['127.0.0.0/8'] });
    config.smtp.trustedProxies = ['127.0.0.7/32'];
    const tls = await loadTls(undefined, dir2, config.hostname);
    const api = new HttpApi({ config, intake: h2.intake, tls, logger: pino({ level: 'silent' }), bind: { address: '127.0.0.1', port: 0 } });
    await api.listen();
    try {
      const response = await new Promise<string>((resolve, reject) => {
        const raw = connect({ host: '127.0.0.1', port: api.port, localAddress: '127.0.0.7' }, () => {
          raw.write('PROXY TCP4 127.0.0.52 127.0.0.1 40000 8443\r\n');
          const s = tlsConnect({ socket: raw, rejectUnauthorized: false }, () => s.write(request));
          let out = '';
          s.on('data', (d: Buffer) => (out += d.toString('latin1')));
          s.on('close', () => resolve(out));
          s.on('error', reject);
        });
        raw.on('error', reject);
      });
      expect(await storedReceived(response)).toMatch(/^Received: from \[127\.0\.0\.52\]/);
    } finally {
      await api.close();
    }
  });

  test('anyone else is plain HTTP: the request is served, a PROXY header is a bad request', async () => {
    expect(await storedReceived(await raw('127.0.0.8', [request]))).toMatch(/^Received: from \[127\.0\.0\.8\]/);
    expect(await raw('127.0.0.8', [`PROXY TCP4 127.0.0.50 127.0.0.1 40000 8080\r\n${request}`])).toMatch(/^HTTP\/1\.1 400 /);
  });
});

// http.max_connections: past it a connection is answered 503 at once (as SMTP answers 421), so an
// injector, or the lb in front, can retry elsewhere; a bare close was a socket error no one retries.
describe('HTTP API connection bound', () => {
  const boundedDir = tempDir();
  let bounded: IntakeHarness;
  let api: HttpApi;
  let port: number;
  const sockets: Socket[] = [];
  const boundedConfig = (max: number) => {
    const config = parseConfig(testConfigYaml().replace('  max_body_size: 256KB\n', `  max_body_size: 256KB\n  max_connections: ${max}\n`), 'bounded.yaml');
    config.smtp.trustedProxies = ['127.0.0.7/32'];
    return config;
  };
  beforeAll(async () => {
    bounded = await startIntake(boundedConfig(2), boundedDir);
    api = bounded.http;
    port = api.port;
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    api.apply(boundedConfig(2));
    await waitUntil(() => api.connections === 0, 5000, () => `${api.connections} still counted`);
  });
  afterAll(() => bounded.close());

  interface Conn {
    socket: Socket;
    text: () => string;
    closed: () => boolean;
  }

  /** A connection from `localAddress` that has sent `first` (if any); what it receives is kept. */
  function connectTo(first?: string, localAddress = '127.0.0.1', to = port): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port: to, host: '127.0.0.1', localAddress }, () => {
        if (first !== undefined) socket.write(first);
        resolve({ socket, text: () => text, closed: () => closed });
      });
      sockets.push(socket);
      let text = '';
      let closed = false;
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', reject);
      socket.on('close', () => (closed = true));
    });
  }

  const GET = 'GET /v1/messages HTTP/1.1\r\nHost: mta\r\n\r\n';
  const POST = `POST /v1/messages HTTP/1.1\r\nHost: mta\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;
  const BUSY = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n';

  /** A kept-alive connection that has had its first answer, so the server holds it. */
  async function held(to = port): Promise<Conn> {
    const c = await connectTo(GET, '127.0.0.1', to);
    await waitUntil(() => c.text().includes('\r\n\r\n'), 5000, () => c.text());
    expect(c.text()).toMatch(/^HTTP\/1\.1 405 /);
    return c;
  }

  test('past http.max_connections a new connection is answered 503 with Retry-After and closed; those open are still served', async () => {
    const a = await held();
    await held();
    // A raw client that POSTs at once, as an injector does: the 503, then the close (no reset).
    const c = await connectTo(POST);
    await waitUntil(() => c.closed(), 5000, () => c.text());
    expect(c.text()).toBe(BUSY);
    // Node's fetch, as an injector written in Node sees it: an answer to retry on, not a socket error.
    const res = await fetch(`http://127.0.0.1:${port}/v1/messages`, { method: 'POST', body: '{}', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.text()).toBe('');
    expect(api.connections).toBe(2);
    // An open one goes on: its next request is answered.
    a.socket.write(GET);
    await waitUntil(() => a.text().split('HTTP/1.1 405').length === 3, 5000, () => a.text());
  });

  test('a connection is uncounted however it ends, so the bound never fills with connections that are gone', async () => {
    const released = async (c: Conn | Promise<Conn>, end: (c: Conn) => void, what: string) => {
      const conn = await c;
      await waitUntil(() => api.connections === 1, 5000, () => `${what}: ${api.connections} counted`);
      end(conn);
      await waitUntil(() => conn.closed() && api.connections === 0, 5000, () => `${what}: ${api.connections} counted after it closed`);
    };
    // The client closes its side after an answer.
    await released(held(), (c) => c.socket.end(), 'client FIN');
    // The client resets it: an error on the server's side.
    await released(held(), (c) => c.socket.resetAndDestroy(), 'client reset');
    // The client goes before sending anything.
    await released(connectTo(), (c) => c.socket.destroy(), 'client gone before a request');
    // The server closes it after answering a request that asked it to.
    await released(connectTo(), (c) => c.socket.write(GET.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')), 'Connection: close');
    // The server drops a trusted proxy that sent no PROXY header.
    await released(connectTo(undefined, '127.0.0.7'), (c) => c.socket.write(GET), 'bad PROXY header');
    // The bound still holds its whole size: two are taken, the third is told 503.
    await held();
    await held();
    const c = await connectTo(GET);
    await waitUntil(() => c.closed(), 5000, () => c.text());
    expect(c.text()).toBe(BUSY);
  });

  test('a connection the keep-alive timeout ends is uncounted too', async () => {
    // Its own API on the same intake, with a short keep-alive timeout to wait for.
    const idle = new HttpApi({ config: boundedConfig(1), intake: bounded.intake, logger: pino({ level: 'silent' }), bind: { address: '127.0.0.1', port: 0 }, keepAliveTimeoutMs: 200 });
    await idle.listen();
    try {
      const c = await held(idle.port);
      expect(idle.connections).toBe(1);
      await waitUntil(() => c.closed() && idle.connections === 0, 5000, () => `${idle.connections} counted; closed: ${c.closed()}`);
      expect((await held(idle.port)).text()).toMatch(/^HTTP\/1\.1 405 /);
    } finally {
      for (const s of sockets.splice(0)) s.destroy();
      await idle.close();
    }
  });

  test('a refresh applies to the next connection: lowered, those open stay open; raised, the next is taken', async () => {
    const a = await held();
    const b = await held();
    api.apply(boundedConfig(1));
    const refused = await connectTo(GET);
    await waitUntil(() => refused.closed(), 5000, () => refused.text());
    expect(refused.text()).toBe(BUSY);
    b.socket.write(GET);
    await waitUntil(() => b.text().split('HTTP/1.1 405').length === 3, 5000, () => b.text());
    expect(a.closed()).toBe(false);
    api.apply(boundedConfig(3));
    await held();
    expect(api.connections).toBe(3);
  });

  test('over TLS (http.tls) the 503 comes over TLS, once the handshake is done', async () => {
    const config = boundedConfig(1);
    const tls = await loadTls(undefined, boundedDir, config.hostname);
    const tlsApi = new HttpApi({ config, intake: bounded.intake, tls, logger: pino({ level: 'silent' }), bind: { address: '127.0.0.1', port: 0 } });
    await tlsApi.listen();
    const open: TLSSocket[] = [];
    const exchange = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: tlsApi.port, rejectUnauthorized: false }, () => s.write(request));
        open.push(s);
        let out = '';
        s.on('data', (d: Buffer) => {
          out += d.toString('latin1');
          if (out.includes('\r\n\r\n')) resolve(out);
        });
        s.on('close', () => resolve(out));
        s.on('error', reject);
      });
    try {
      expect(await exchange(GET)).toMatch(/^HTTP\/1\.1 405 /);
      expect(await exchange(POST)).toBe(BUSY);
      expect(tlsApi.connections).toBe(1);
    } finally {
      for (const s of open) s.destroy();
      await tlsApi.close();
    }
  });
});
