// The transactions of one session (records/transactions.ts) over fakes: a
// scripted session, throttle authority and recorder, so the order of a
// deferral's pause, its record and the next send is what the test sees.
import type { VolleyConfig } from '../../../../../runtime/shared/config/types';
import type { OutboundSession, SendOptions, TransactionResult } from '../../../../../runtime/shared/smtp/connector';
import type { DkimSigner } from '../../../../../runtime/mta/delivery/dkim/dkim';
import type { Destination, Destinations } from '../../../../../runtime/mta/delivery/queues/destinations';
import type { Parking } from '../../../../../runtime/mta/delivery/scheduler/parking';
import type { AttemptRecorder, Job } from '../../../../../runtime/mta/delivery/records/attempt-recorder';
import type { ThrottleAuthority } from '../../../../../runtime/mta/delivery/throttle/throttle-authority';
import { throttleKey } from '../../../../../runtime/mta/delivery/throttle/throttle-key';
import { Transactions } from '../../../../../runtime/mta/delivery/records/transactions';
import { VolleyError } from '../../../../../runtime/shared/errors';

const NOW = 1_000_000;
const PAUSE_MS = 60_000;

/** A job whose message the fake partition reads at once. */
function job(rcpt: string): Job {
  const partition = { recordable: true, read: async () => ({ envelope: { from: 'a@shop.test', to: [rcpt] }, body: Buffer.from('x\r\n') }) };
  return { attempt: { entry: { id: rcpt }, partition, pending: 1, finished: [], deferred: [], events: [] }, domain: 'busy.test', rcpts: [rcpt] } as unknown as Job;
}

function destination(jobs: Job[]): Destination {
  return { key: 'v|busy.test', domain: 'busy.test', source: { ip: '127.0.0.1', helo: 'v.test' }, jobs, active: 1, stalled: 0, idle: [], heldUntil: 0 } as unknown as Destination;
}

test('a deferral that pauses its destination stops the connection even when its record throws: no more mail is sent there', async () => {
  const [first, second, third] = ['r1@busy.test', 'r2@busy.test', 'r3@busy.test'].map(job);
  const dest = destination([first, second, third]);
  const sent: string[] = [];
  // The second body waits for the test, so the first deferral is answered, paused and recorded before the connection goes on.
  let releaseSecond!: () => void;
  const secondBody = new Promise<void>((r) => (releaseSecond = r));
  let recorded!: () => void;
  const firstRecorded = new Promise<void>((r) => (recorded = r));
  const session: OutboundSession = {
    info: { mxHost: 'mx.busy.test', mxIp: '127.0.0.1', port: 25, helo: 'v.test', via: 'test', connectMs: 0 },
    usable: true,
    pipelined: true,
    send: async (_from: string, to: string[], _message: Buffer, options?: SendOptions): Promise<TransactionResult> => {
      sent.push(to[0]);
      if (to[0] === 'r2@busy.test') await secondBody;
      options?.onBodySent?.();
      const outcome = to[0] === 'r1@busy.test' ? ('deferred' as const) : ('delivered' as const);
      return { recipients: to.map((rcpt) => ({ rcpt, reply: { code: outcome === 'deferred' ? 451 : 250, text: 'x' }, outcome })), envelopeMs: 0, dataMs: 0 };
    },
    close: () => undefined,
  };
  const authority = {
    tryMessage: async () => ({ ok: true as const }),
    onTemporaryFailure: async () => PAUSE_MS,
  } as unknown as ThrottleAuthority;
  const diskFull = new VolleyError('ENOSPC', 'attempt log: no space left');
  const recorder = {
    record: (j: Job) => {
      if (j === first) {
        recorded();
        throw diskFull;
      }
    },
    abandon: () => undefined,
  } as unknown as AttemptRecorder;
  const transactions = new Transactions({
    config: () => ({ delivery: { pipelineTransactions: true } }) as VolleyConfig,
    signer: () => ({ sign: (message: Buffer) => ({ message }) }) as unknown as DkimSigner,
    now: () => NOW,
    authority,
    recorder,
    parking: { mayDeliver: () => true } as unknown as Parking,
    destinations: { touch: () => undefined } as unknown as Destinations,
    stopped: () => false,
    pump: () => undefined,
    nextJob: async () => undefined,
  });
  const run = transactions.run(dest, session, throttleKey('v', 'busy.test'), { maxConnections: 1, maxMessagesPerHour: Infinity });
  run.catch(() => undefined); // awaited below
  await firstRecorded;
  releaseSecond();
  await expect(run).rejects.toBe(diskFull);
  expect(sent).toEqual(['r1@busy.test', 'r2@busy.test']);
  expect(dest.heldUntil).toBe(NOW + PAUSE_MS);
  expect(dest.jobs).toEqual([third]); // read ahead, not sent: it waits for the pause
});
