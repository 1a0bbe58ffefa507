// The secondary's answer to a batch, seen from a hand-made primary over the
// real TLS + HMAC link: one ack per batch, in order, each only after the
// apply that made the batch durable (fdatasync) returned, and no other frame
// (a `received` frame went before each ack and nobody read it); and a link
// that replaces one whose batch is still being written takes its inventory
// only once that batch is on disk.
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyBatch } from '../../../runtime/mirror/apply';
import { sha256, type Inventory } from '../../../runtime/mirror/files';
import { Sender, type Batch } from '../../../runtime/mirror/sender';
import { writeState } from '../../../runtime/mirror/state';
import { dialProxy, loadSecret, type FrameChannel, type Frame } from '../../../runtime/shared/proxy-protocol';
import { getFreePort } from '../../helpers/postfix-tools';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { inProcessMirrors } from '../../helpers/mirror-daemons';

const SEG = join('spool', 'p000', '000000000001.seg');

/** A batch frame appending `text` at `offset` of SEG. */
function batch(seq: number, offset: number, text: string, epoch = 1): Frame {
  const body = Buffer.from(text);
  return { header: { t: 'batch', epoch, seq, ops: [{ op: 'write', path: SEG, offset, len: body.length, sha256: sha256(body) }] }, body };
}

describe('a secondary answering batches', () => {
  const mirrors = inProcessMirrors('volley-mirror-group-');
  const closing = mirrors.closing;

  test('acks each batch, in order, only after its apply made it durable, and sends nothing else', async () => {
    mkdirSync(join(mirrors.base, 'b'), { recursive: true });
    writeState(join(mirrors.base, 'b'), { role: 'secondary', epoch: 1, caughtUp: false });
    const port = await getFreePort();
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
    const { root, daemon } = await mirrors.node('b', { self: port, peer: await getFreePort() }, '', { apply });
    closing.push(() => held.splice(0).forEach((r) => r()));

    const { channel } = await dialProxy(
      { host: '127.0.0.1', port, fingerprint: mirrors.tls().fingerprint, name: 'secondary' },
      { secret: loadSecret({ file: mirrors.secretFile() }), connectTimeoutMs: 5_000, handshakeTimeoutMs: 5_000, name: 'hand-made-primary', channel: 'mirror' },
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
    send(channel, batch(2, 2, 'b\n'));
    send(channel, batch(3, 4, 'c\n'));
    // The first apply is still held: nothing answered yet.
    expect(events.filter((e) => !e.startsWith('apply'))).toEqual([]);
    held[0]();
    await acks;
    // Only acks came back, one per batch, in order, each after the apply of its batch was durable.
    expect(events.filter((e) => !e.startsWith('apply') && e !== 'durable')).toEqual(['ack 1', 'ack 2', 'ack 3']);
    for (const [n, text] of [[1, 'a'], [2, 'b'], [3, 'c']] as const) {
      const applied = events.indexOf(`apply ${text}`);
      expect(events.indexOf('durable', applied)).toBeLessThan(events.indexOf(`ack ${n}`));
    }
    expect(readFileSync(join(root, SEG), 'utf8')).toBe('a\nb\nc\n');
    expect(daemon.status().batches).toBe(3);
  });

  // The old link's batch (a new segment: truncate to 0, then its bytes) still
  // in its write when the primary reconnects: an inventory taken then lacks
  // it, the new link's catch-up writes the segment, and the old batch's
  // truncate lands after that; the next append then leaves a hole of zeros
  // where mail was, on a secondary the primary counts as caught up.
  test('a new link takes its inventory only after the old link\'s batch is written', async () => {
    const primary = join(mirrors.base, 'relink-a');
    mkdirSync(join(primary, 'spool', 'p000'), { recursive: true });
    mkdirSync(join(mirrors.base, 'relink-b'), { recursive: true });
    writeState(join(mirrors.base, 'relink-b'), { role: 'secondary', epoch: 1, caughtUp: false });
    const port = await getFreePort();
    let release: (() => void) | undefined;
    let firstDone: Promise<void> | undefined;
    const apply: typeof applyBatch = async (dir, ops, body) => {
      if (!firstDone) {
        // The first batch: its disk is slow (held until the test lets it go).
        let done!: () => void;
        firstDone = new Promise<void>((r) => (done = r));
        await new Promise<void>((resolve) => (release = resolve));
        await applyBatch(dir, ops, body);
        return done();
      }
      await applyBatch(dir, ops, body);
    };
    const { root, log } = await mirrors.node('relink-b', { self: port, peer: await getFreePort() }, '', { apply });
    closing.push(() => release?.());
    const dial = async (): Promise<FrameChannel> => {
      const { channel } = await dialProxy(
        { host: '127.0.0.1', port, fingerprint: mirrors.tls().fingerprint, name: 'secondary' },
        { secret: loadSecret({ file: mirrors.secretFile() }), connectTimeoutMs: 5_000, handshakeTimeoutMs: 5_000, name: 'hand-made-primary', channel: 'mirror' },
      );
      closing.push(() => channel.close());
      channel.send({ t: 'mirror_open', epoch: 1, role: 'primary', name: 'hand-made-primary' });
      return channel;
    };
    /** One batch from the primary's real Sender, sent as `seq`; resolves once acked. */
    const ship = async (channel: FrameChannel, sender: Sender, seq: number): Promise<Batch> => {
      const b = (await sender.next())!;
      channel.send({ t: 'batch', epoch: 1, seq, ops: b.ops }, b.body);
      return b;
    };
    const inventoryOf = (f: Frame): Inventory => {
      expect(f.header.t).toBe('inventory');
      return f.header.files as Inventory;
    };

    writeFileSync(join(primary, SEG), 'old\n');
    const first = await dial();
    const s1 = new Sender({ root: primary, batchMaxBytes: 1 << 20, resyncRateBytes: 1 << 30 });
    await s1.start(inventoryOf(await nextFrame(first)));
    await ship(first, s1, 1);
    await waitUntil(() => release !== undefined, 10_000, () => 'the first batch never reached the apply');
    // The link drops with the batch still being written; the primary takes more mail and reconnects.
    first.close();
    appendFileSync(join(primary, SEG), 'more\n');
    const second = await dial();
    const inventory = nextFrame(second);
    let answered = false;
    void inventory.then(() => (answered = true), () => undefined);
    // Either the inventory comes at once, or the secondary says it waits for the old batch: then the disk lets it go.
    await waitUntil(() => answered || log.text().includes('waits for the old link'), 10_000, () => 'neither an inventory nor a wait');
    if (!answered) release!();
    const s2 = new Sender({ root: primary, batchMaxBytes: 1 << 20, resyncRateBytes: 1 << 30 });
    await s2.start(inventoryOf(await inventory));
    const b = await ship(second, s2, 1);
    expect((await nextFrame(second)).header).toMatchObject({ t: 'ack', seq: 1 });
    s2.acked(b);
    // The old batch's write ends now, if it had not yet.
    release!();
    await firstDone;
    appendFileSync(join(primary, SEG), 'x\n');
    const c = await ship(second, s2, 2);
    expect((await nextFrame(second)).header).toMatchObject({ t: 'ack', seq: 2 });
    s2.acked(c);
    expect(JSON.stringify(readFileSync(join(root, SEG), 'utf8'))).toBe(JSON.stringify('old\nmore\nx\n'));
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
