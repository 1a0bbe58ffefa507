// The secondary's answer to a batch, seen from a hand-made primary over the
// real TLS + HMAC link: one ack per batch, in order, each only after the
// apply that made the batch durable (fdatasync) returned, and no other frame
// (a `received` frame went before each ack and nobody read it).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyBatch } from '../../../runtime/mirror/apply';
import { sha256 } from '../../../runtime/mirror/files';
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
