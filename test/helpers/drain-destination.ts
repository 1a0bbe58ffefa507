// A drain destination for tests of `volley drain` (the source side), built on
// the shared protocol.ts: an HTTPS server on 127.0.0.1 that checks the
// signature, deduplicates by id like a real destination, answers per message,
// and can be told to misbehave: refuse for good (401/403/409), say 503, hang
// (never answer: the source's request timeout), take a batch and then cut
// the connection (committed, but the source never hears it), or take a batch
// and answer 500 `unknown` (a wedged store: it cannot say what it stored). It counts every
// id it was sent and every one it queued, so a test can check "0 lost, 0
// duplicates" by id. The real destination (the drain endpoint) replaces it
// once merged; the source's tests are then run against that too.
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { DRAIN_PATH_HAVE, DRAIN_PATH_MESSAGES, decodeBatch, isBadRecord, verifyRequest, type DrainMessageHeader, type DrainResult } from '../../runtime/mta/drain/protocol';

export type DestinationMode = 'ok' | 'unauthorized' | 'forbidden' | 'self' | 'unavailable' | 'hang' | 'commit-then-cut' | 'commit-then-500';

export interface TestDestination {
  port: number;
  label: string;
  /** Headers of every message queued here, by id (one entry per id: a second copy is a duplicate, counted below). */
  queued: Map<string, { header: DrainMessageHeader; body: Buffer }>;
  /** Ids that arrived again after being queued (answered `duplicate`). */
  duplicatesAnswered: string[];
  /** Batches it answered (any status). */
  requests: number;
  /** The source addresses requests came from (--bind-ip). */
  peers: Set<string>;
  mode: DestinationMode;
  /** Answer these ids `refused` (a per-message refusal). */
  refuse: Set<string>;
  /** Called with each batch as it arrives (before the answer), e.g. to kill the source mid-drain. */
  onBatch?: (ids: string[]) => void;
  close(): Promise<void>;
}

export async function startDrainDestination(options: { key: Buffer; cert: Buffer; secret: Buffer; port?: number }): Promise<TestDestination> {
  const sockets = new Set<Socket>();
  const dest: TestDestination = {
    port: 0,
    label: '',
    queued: new Map(),
    duplicatesAnswered: [],
    requests: 0,
    peers: new Set(),
    mode: 'ok',
    refuse: new Set(),
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer({ key: options.key, cert: options.cert }, (req, res) => {
    dest.peers.add(req.socket.remoteAddress ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const answer = (status: number, json: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      let records: ReturnType<typeof decodeBatch> = [];
      if (req.url === DRAIN_PATH_MESSAGES) {
        try {
          records = decodeBatch(body);
        } catch {
          return answer(400, { error: 'malformed batch' });
        }
        // Before any answer, whatever the mode: a test may change the mode or kill the source here.
        dest.onBatch?.(records.map((r) => (isBadRecord(r) ? r.id : r.header.id)));
      }
      if (dest.mode === 'hang') return; // never answers; the source's timeout ends it
      if (dest.mode === 'unauthorized') return answer(401, { error: 'bad_signature' });
      if (dest.mode === 'forbidden') return answer(403, { error: 'address not allowed by drain.accept_from' });
      if (dest.mode === 'self') return answer(409, { error: 'a drain to itself' });
      if (dest.mode === 'unavailable') return answer(503, { error: 'not ready' });
      const v = verifyRequest(req.headers, body, [options.secret]);
      if (!v.ok) return answer(401, { error: v.reason });
      if (req.url === DRAIN_PATH_HAVE) {
        const ids = (JSON.parse(body.toString('utf8')) as { ids: string[] }).ids;
        return answer(200, { have: ids.filter((id) => dest.queued.has(id)) });
      }
      if (req.url !== DRAIN_PATH_MESSAGES) return answer(404, { error: 'no such path' });
      const results: DrainResult[] = records.map((r) => {
        if (isBadRecord(r)) return { id: r.id, status: 'refused', reason: r.error };
        const id = r.header.id;
        if (dest.refuse.has(id)) return { id, status: 'refused', reason: 'refused by the test' };
        if (dest.queued.has(id)) {
          dest.duplicatesAnswered.push(id);
          return { id, status: 'duplicate' };
        }
        dest.queued.set(id, { header: r.header, body: Buffer.from(r.body) });
        return { id, status: 'queued' };
      });
      dest.requests++;
      if (dest.mode === 'commit-then-cut') return req.socket.destroy();
      // As the drain endpoint answers when a worker did not say (DRAIN_HTTP_STATUS.unknown).
      if (dest.mode === 'commit-then-500') return answer(500, { error: { code: 'store_unknown', message: 'cannot say whether every message was stored; send this batch here again' } });
      answer(200, { results });
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const a = server.address();
  dest.port = typeof a === 'object' && a ? a.port : 0;
  dest.label = `127.0.0.1:${dest.port}`;
  return dest;
}
