// A worker's throttle authority (PrimaryAuthority) against a scripted
// primary: which questions cross IPC, and how many, when a delivery pump
// starts many connection attempts to one destination at once, and what
// waiting asks get when the primary goes away.
import { EventEmitter } from 'node:events';
import { PrimaryAuthority, type ThrottleOp } from '../../../../../runtime/mta/delivery/throttle/throttle-authority';
import { throttleKey } from '../../../../../runtime/mta/delivery/throttle/throttle-key';

const vd = throttleKey('v', 'd');

const limits = { maxConnections: 2, maxMessagesPerHour: Infinity };

/** An authority whose messages to the primary are kept for the test to answer. */
function scripted() {
  const sent: { id: number; q: ThrottleOp }[] = [];
  const authority = new PrimaryAuthority((m) => sent.push({ id: m.id, q: m.q }));
  const answer = (op: ThrottleOp['op'], value: unknown): void => {
    for (const m of sent.filter((x) => x.q.op === op)) authority.onReply(m.id, value);
  };
  return { sent, authority, answer };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('ten attempts at a destination at its limit: one connection ask, and its refusal answers all ten', async () => {
  const { sent, authority, answer } = scripted();
  const attempts = Array.from({ length: 10 }, () => authority.tryConnection(vd, limits));
  await flush();
  expect(sent.filter((m) => m.q.op === 'connect')).toHaveLength(1);
  answer('connect', false);
  expect(await Promise.all(attempts)).toEqual(new Array(10).fill(false));
  expect(sent).toHaveLength(1);
});

test('a granted permit does not stand for the others: the next attempt asks for its own, one at a time', async () => {
  const { sent, authority } = scripted();
  const a = authority.tryConnection(vd, limits);
  const b = authority.tryConnection(vd, limits);
  await flush();
  expect(sent).toHaveLength(1);
  authority.onReply(sent[0].id, true);
  expect(await a).toBe(true);
  await flush();
  expect(sent).toHaveLength(2);
  authority.onReply(sent[1].id, true);
  expect(await b).toBe(true);
  // Another key is never held up by this one's asks.
  void authority.tryConnection(throttleKey('v', 'other'), limits);
  await flush();
  expect(sent).toHaveLength(3);
});

test('pause questions asked together cross once; a release is told, never answered', async () => {
  const { sent, authority, answer } = scripted();
  const paused = Array.from({ length: 5 }, () => authority.pausedFor(vd));
  await flush();
  expect(sent.map((m) => m.q.op)).toEqual(['paused']);
  answer('paused', 3000);
  expect(await Promise.all(paused)).toEqual(new Array(5).fill(3000));
  // Asked again later: a fresh answer.
  void authority.pausedFor(vd);
  authority.releaseConnection(vd);
  expect(sent.map((m) => m.q.op)).toEqual(['paused', 'paused', 'release']);
  expect(sent[2].id).toBe(0);
});

/** A worker's IPC channel to its primary that the test closes, as a crashed primary's does. */
function channel() {
  const emitter = new EventEmitter();
  const sent: { id: number; q: ThrottleOp }[] = [];
  return { sent, emitter, on: emitter.on.bind(emitter), send: (m: { id: number; q: ThrottleOp }) => sent.push({ id: m.id, q: m.q }) };
}

/** Whether `p` settled once pending callbacks ran (an unsettled ask stays a mark). */
async function settled<T>(p: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([p, flush().then(() => 'pending' as const)]);
}

test('the primary goes away with asks in flight: each is answered with nothing more sent (no pause, no connection, no permits), and so is every later ask', async () => {
  const ch = channel();
  const authority = PrimaryAuthority.overChannel(ch);
  const reply = { code: 421, text: '4.7.0 try later' };
  const limited = { maxConnections: 2, maxMessagesPerHour: 100 };
  const failure = authority.onTemporaryFailure(vd, 'd', reply);
  const paused = authority.pausedFor(vd);
  const connection = authority.tryConnection(vd, limits);
  const message = authority.tryMessage(vd, limited);
  await flush();
  expect(ch.sent.map((m) => m.q.op).sort()).toEqual(['connect', 'failure', 'lease', 'paused']);
  expect(await settled(failure)).toBe('pending');
  ch.emitter.emit('disconnect');
  expect(await settled(failure)).toBe(0);
  expect(await settled(paused)).toBe(0);
  expect(await settled(connection)).toBe(false);
  expect(await settled(message)).toEqual({ ok: false, waitMs: expect.any(Number) });
  // Asked after: answered at once, and nothing is written to the closed channel.
  expect(await settled(authority.onTemporaryFailure(vd, 'd', reply))).toBe(0);
  expect(await settled(authority.tryConnection(vd, limits))).toBe(false);
  authority.releaseConnection(vd);
  expect(ch.sent).toHaveLength(4);
});
