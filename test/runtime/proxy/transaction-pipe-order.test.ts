// The proxy's transaction pipe (runtime/proxy/transaction-pipe.ts) in
// process, over a scripted MX session and frame channel: what a transaction
// waiting behind a non-pipelined one sees when that one's answer ends the
// session. The pipe over real processes is transaction-pipe.test.ts.
import type { FrameChannel } from '../../../runtime/shared/proxy-protocol';
import type { SendOptions, TransactionResult } from '../../../runtime/shared/smtp/connector';
import type { MxSession } from '../../../runtime/proxy/pool';
import { TransactionPipe } from '../../../runtime/proxy/transaction-pipe';

/** A session that does not pipeline: each send() is answered when the test says. */
function scriptedMx() {
  const sends: { to: string[]; answer: (tx: TransactionResult) => void; fail: (err: Error) => void }[] = [];
  let closed = 0;
  const session = {
    usable: true, // a transaction's failure does not say so here: the pipe's own answer must end the session
    pipelined: false,
    send: (_from: string, to: string[], _body: Buffer, _options?: SendOptions) =>
      new Promise<TransactionResult>((answer, fail) => sends.push({ to, answer, fail })),
    close: () => void closed++,
  };
  const mx = { session, key: 'k', sendingIp: '127.0.0.2', transactions: 0, capabilities: [] } as unknown as MxSession;
  return { mx, sends, closed: () => closed };
}

function channel() {
  const answers: { t: string; message?: string; usable?: boolean }[] = [];
  return { answers, channel: { open: true, send: (h: { t: string }) => void answers.push(h) } as unknown as FrameChannel };
}

const frame = (rcpt: string) => ({ header: { t: 'transaction', from: 'a@shop.test', to: [rcpt] }, body: Buffer.from('x\r\n') });
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));
const delivered = (rcpt: string): TransactionResult => ({ recipients: [{ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' }], envelopeMs: 0, dataMs: 0 });

test('a transaction that loses the session: the one waiting behind it never reaches the MX', async () => {
  const { mx, sends, closed } = scriptedMx();
  const { answers, channel: ch } = channel();
  const pipe = new TransactionPipe(mx, ch, { hosted: () => true, counted: () => undefined, drained: () => undefined });
  pipe.take(frame('r1@mx.test'));
  pipe.take(frame('r2@mx.test'));
  expect(sends.map((s) => s.to[0])).toEqual(['r1@mx.test']);
  sends[0].fail(new Error('connection reset by the MX'));
  await flush();
  expect(sends).toHaveLength(1);
  expect(answers.map((a) => [a.t, a.message])).toEqual([
    ['transaction_failed', 'connection reset by the MX'],
    ['transaction_failed', 'the MX session ended before this transaction'],
  ]);
  expect(closed()).toBe(1);
  expect(pipe.inFlight).toBe(0);
});

test('a transaction whose sending IP a reload removed: the one waiting behind it is not sent on the retiring session', async () => {
  const { mx, sends, closed } = scriptedMx();
  const { answers, channel: ch } = channel();
  let hosted = true;
  const pipe = new TransactionPipe(mx, ch, { hosted: () => hosted, counted: () => undefined, drained: () => undefined });
  pipe.take(frame('r1@mx.test'));
  pipe.take(frame('r2@mx.test'));
  hosted = false;
  sends[0].answer(delivered('r1@mx.test'));
  await flush();
  expect(sends).toHaveLength(1);
  expect(answers.map((a) => [a.t, a.usable])).toEqual([
    ['result', false],
    ['transaction_failed', false],
  ]);
  expect(closed()).toBe(1); // QUIT once both are answered
  expect(pipe.inFlight).toBe(0);
});
