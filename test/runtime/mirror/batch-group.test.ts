// The secondary takes batches queued behind one another together: one apply
// (one fdatasync per file) for all, each acked in order and only after that
// apply made them durable. Unit tests of gatherBatches, then a secondary
// daemon driven by a hand-made primary over the real TLS + HMAC link.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyBatch } from '../../../runtime/mirror/apply';
import { gatherBatches, type QueuedFrames } from '../../../runtime/mirror/batch-group';
import { parseMirrorConfig } from '../../../runtime/mirror/config';
import { MirrorDaemon } from '../../../runtime/mirror/daemon';
import { sha256 } from '../../../runtime/mirror/files';
import { writeState } from '../../../runtime/mirror/state';
import { dialProxy, encodeFrame, loadSecret, type FrameChannel, type Frame } from '../../../runtime/shared/proxy-protocol';
import { getFreePort } from '../../helpers/postfix-tools';
import { captureLogger, newSecret, proxyTls, waitUntil, type ProxyTls } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const SEG = join('spool', 'p000', '000000000001.seg');

/** A batch frame appending `text` at `offset` of SEG. */
function batch(seq: number, offset: number, text: string, epoch = 1): Frame {
  const body = Buffer.from(text);
  return { header: { t: 'batch', epoch, seq, ops: [{ op: 'write', path: SEG, offset, len: body.length, sha256: sha256(body) }] }, body };
}

/** Frames already here, as the link's channel holds them. */
function queued(frames: Frame[]): QueuedFrames & { left: Frame[] } {
  return {
    left: frames,
    peek: () => frames[0],
    next: () => Promise.resolve(frames.shift()!),
  };
}

describe('gatherBatches', () => {
  test('takes the batches queued right behind the first, in order, as one list of ops and one body', () => {
    const link = queued([batch(2, 2, 'b\n'), batch(3, 4, 'c\n'), { header: { t: 'synced', epoch: 1 } }, batch(4, 6, 'd\n')]);
    const g = gatherBatches(link, batch(1, 0, 'a\n'));
    expect(g.seqs).toEqual([1, 2, 3]);
    expect(g.ops.map((o) => (o.op === 'write' ? o.offset : -1))).toEqual([0, 2, 4]);
    expect(g.body.toString()).toBe('a\nb\nc\n');
    expect(g.last.header.seq).toBe(3);
    // What is not a batch stays for the receive loop, and so does everything behind it.
    expect(link.left.map((f) => f.header.t)).toEqual(['synced', 'batch']);
  });

  test('a batch of another epoch is left for the receive loop (its epoch check comes first)', () => {
    const link = queued([batch(2, 2, 'b\n', 2)]);
    expect(gatherBatches(link, batch(1, 0, 'a\n')).seqs).toEqual([1]);
    expect(link.left).toHaveLength(1);
  });

  test('one bad batch in the group refuses the whole group', () => {
    const bad = batch(2, 2, 'b\n');
    bad.body = Buffer.from('bbbb');
    expect(() => gatherBatches(queued([bad]), batch(1, 0, 'a\n'))).toThrow(expect.objectContaining({ code: 'EMIRRORBATCH' }));
  });
});

describe('a secondary with batches queued behind one another', () => {
  const base = tempDir('volley-mirror-group-');
  let tls: ProxyTls;
  let secretFile: string;
  const closing: (() => unknown)[] = [];

  beforeAll(async () => {
    tls = await proxyTls(base);
    secretFile = join(base, 'mirror.secret');
    writeFileSync(secretFile, newSecret());
  });

  afterEach(async () => {
    for (const c of closing.splice(0).reverse()) await c();
  });

  test('applies them with one apply and acks each, in order, only after that apply made them durable', async () => {
    const root = join(base, 'b');
    mkdirSync(root, { recursive: true });
    writeState(root, { role: 'secondary', epoch: 1, caughtUp: false });
    const port = await getFreePort();
    const config = parseMirrorConfig(
      `persistent_path: ${root}\nlisten: 127.0.0.1:${port}\npeer: 127.0.0.1:${await getFreePort()}\ntls: { cert: ${tls.certPath}, key: ${tls.keyPath} }\npeer_fingerprint: "${tls.fingerprint}"\nsecret_file: ${secretFile}\nreconnect_interval: 50ms\n`,
      join(base, 'b.yaml'),
    );
    // What happened, in order: each apply (with its batches' byte count) and when it was durable, each ack the primary got.
    const events: string[] = [];
    const held: (() => void)[] = [];
    const apply: typeof applyBatch = async (dir, ops, body) => {
      events.push(`apply ${(body ?? Buffer.alloc(0)).toString().replace(/\n/g, '')}`);
      // The first batch waits for the test: the next ones queue on the link meanwhile.
      if (events.length === 1) await new Promise<void>((resolve) => held.push(resolve));
      await applyBatch(dir, ops, body);
      events.push('durable');
    };
    const { logger } = captureLogger();
    const daemon = new MirrorDaemon(config, logger, { apply });
    await daemon.start();
    closing.push(() => daemon.stop());
    closing.push(() => held.splice(0).forEach((r) => r()));

    const { channel } = await dialProxy(
      { host: '127.0.0.1', port, fingerprint: tls.fingerprint, name: 'secondary' },
      { secret: loadSecret({ file: secretFile }), connectTimeoutMs: 5_000, handshakeTimeoutMs: 5_000, name: 'hand-made-primary', channel: 'mirror' },
    );
    closing.push(() => channel.close());
    channel.send({ t: 'mirror_open', epoch: 1, role: 'primary', name: 'hand-made-primary' });
    expect((await nextFrame(channel)).header.t).toBe('inventory');
    const acks = (async () => {
      for (;;) {
        const f = await nextFrame(channel);
        events.push(`${f.header.t} ${String(f.header.seq)}`);
        if (f.header.t === 'ack' && f.header.seq === 3) return;
      }
    })();
    // Awaited below; a failure before that closes the link under it.
    acks.catch(() => undefined);

    send(channel, batch(1, 0, 'a\n'));
    await waitUntil(() => held.length === 1, 10_000, () => 'the first batch never reached the apply');
    const inbound = (daemon as unknown as { inbound: FrameChannel }).inbound;
    const before = inbound.bytesIn;
    const later = [batch(2, 2, 'b\n'), batch(3, 4, 'c\n')];
    for (const b of later) send(channel, b);
    const expected = before + later.reduce((n, b) => n + encodeFrame(b.header, b.body).length, 0);
    await waitUntil(() => inbound.bytesIn >= expected, 10_000, () => `the secondary read ${inbound.bytesIn - before} of ${expected - before} bytes`);
    expect(events.filter((e) => e.startsWith('apply') || e.startsWith('ack'))).toEqual(['apply a']);
    held[0]();
    await acks;
    // Batch 1 alone (it came first), then 2 and 3 in one apply, and nothing but acks back (in order).
    expect(events.filter((e) => e.startsWith('apply'))).toEqual(['apply a', 'apply bc']);
    expect(events.filter((e) => !e.startsWith('apply') && e !== 'durable')).toEqual(['ack 1', 'ack 2', 'ack 3']);
    // No ack before the apply that covers it was durable (ack 1 may pass the second apply's start: same process).
    const durable = events.flatMap((e, i) => (e === 'durable' ? [i] : []));
    expect(durable).toHaveLength(2);
    expect(events.indexOf('ack 1')).toBeGreaterThan(durable[0]);
    expect(events.indexOf('ack 2')).toBeGreaterThan(durable[1]);
    expect(readFileSync(join(root, SEG), 'utf8')).toBe('a\nb\nc\n');
    expect(daemon.status().batches).toBe(3);
  });
});

function send(channel: FrameChannel, f: Frame): void {
  channel.send(f.header, f.body);
}

/** The next frame that is not the secondary's keep-alive beacon. */
async function nextFrame(channel: FrameChannel): Promise<Frame> {
  for (;;) {
    const f = await channel.next(10_000);
    if (f.header.t !== 'pong') return f;
  }
}
