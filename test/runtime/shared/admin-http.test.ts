// The admin-port plumbing the MTA, the lb and the proxy share: the open
// endpoints, JSON answers, a handler error answered as a JSON 500 (or the
// connection ended when the answer had begun), and a close that neither
// waits on kept-alive connections nor fails on a server never started.
import { Agent, request, type Server } from 'node:http';
import { adminHttpServer, closeHttpServer, sendJson, serveOpenEndpoint, type OpenEndpoints, type Readiness } from '../../../runtime/shared/admin-http';
import { listen } from '../../../runtime/shared/listen';

const servers: Server[] = [];
afterAll(() => Promise.all(servers.map(closeHttpServer)));

async function serve(route: Parameters<typeof adminHttpServer>[0]): Promise<string> {
  const server = adminHttpServer(route);
  servers.push(server);
  return `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}`;
}

function endpoints(state: { ready: Readiness; draining?: boolean }): OpenEndpoints {
  return {
    health: () => (state.draining ? { ok: false, draining: true } : { ok: true }),
    ready: async () => state.ready,
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'volley_up 1\n' }),
  };
}

test('/healthz, /readyz and /metrics; anything else is left to the caller', async () => {
  const state = { ready: { ok: false, reasons: ['the MTA listener is not bound yet'] }, draining: false };
  const base = await serve(async (req, res) => {
    if (!(await serveOpenEndpoint(req, res, endpoints(state)))) sendJson(res, 404, { error: 'mine' });
  });
  const get = async (path: string, method = 'GET') => {
    const r = await fetch(base + path, { method });
    return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
  };
  expect(await get('/healthz')).toEqual({ status: 200, type: 'application/json', body: '{\n  "ok": true\n}\n' });
  expect(await get('/readyz?verbose=1')).toMatchObject({ status: 503, body: expect.stringContaining('the MTA listener is not bound yet') });
  expect(await get('/metrics')).toEqual({ status: 200, type: 'text/plain; version=0.0.4', body: 'volley_up 1\n' });
  state.ready = { ok: true, reasons: [] };
  state.draining = true;
  expect(await get('/readyz')).toMatchObject({ status: 200 });
  expect(JSON.parse((await get('/healthz')).body)).toEqual({ ok: false, draining: true });
  expect((await get('/healthz')).status).toBe(503);
  expect(await get('/healthz', 'POST')).toMatchObject({ status: 404, body: expect.stringContaining('mine') });
  expect(await get('/queue')).toMatchObject({ status: 404, body: expect.stringContaining('mine') });
});

test('a handler that throws gets a JSON 500; one that throws after its answer began ends the connection instead of hanging', async () => {
  const base = await serve(async (req, res) => {
    if (req.url === '/late') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    }
    throw new Error('registry unavailable');
  });
  const early = await fetch(`${base}/metrics`);
  expect({ status: early.status, body: await early.json() }).toEqual({ status: 500, body: { error: 'registry unavailable' } });
  await expect(fetch(`${base}/late`).then((r) => r.text())).rejects.toThrow();
});

test('close resolves for a server that never listened, and does not wait on a kept-alive connection', async () => {
  await expect(closeHttpServer(adminHttpServer(async () => undefined))).resolves.toBeUndefined();
  const server = adminHttpServer(async (_req, res) => sendJson(res, 200, { ok: true }));
  server.keepAliveTimeout = 600_000;
  const port = await listen(server, 0, '127.0.0.1');
  const agent = new Agent({ keepAlive: true });
  await new Promise<void>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    })
      .on('error', reject)
      .end();
  });
  // The agent keeps that socket open; close must cut it rather than wait out the keep-alive.
  await closeHttpServer(server);
  expect(server.listening).toBe(false);
  agent.destroy();
});
