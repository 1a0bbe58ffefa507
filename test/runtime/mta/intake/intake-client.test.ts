import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import pino from 'pino';
import { Intake, IntakeError } from '../../../../runtime/mta/intake/intake';
import { IntakeClient, withHeader } from '../../../../runtime/mta/intake/intake-client';
import { IntakeService } from '../../../../runtime/mta/intake/intake-service';
import type { FromQueue, ToQueue } from '../../../../runtime/mta/ipc';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import { testConfig } from '../../../helpers/config';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();

/**
 * The listeners' thread and the queue thread, both ends on one real
 * MessageChannel (structured clone and transfer as between threads), with a
 * real spool partition behind the service.
 */
async function pair(): Promise<{ client: IntakeClient; partition: SpoolPartition; posts: ToQueue[]; close(): Promise<void> }> {
  const partition = await SpoolPartition.open({ dir: join(dir, `spool-${Math.random().toString(36).slice(2)}`), logger: pino({ level: 'silent' }) });
  const { port1, port2 } = new MessageChannel();
  const posts: ToQueue[] = [];
  const client = new IntakeClient((m, transfer) => {
    posts.push(m);
    port1.postMessage(m, transfer);
  });
  const service = new IntakeService(new Intake(partition, testConfig()), (m) => port2.postMessage(m), pino({ level: 'silent' }));
  port2.on('message', (m: ToQueue) => {
    if (m.type === 'submit') service.submit(m.batch);
  });
  port1.on('message', (m: FromQueue) => {
    if (m.type === 'answers') client.onAnswers(m.batch);
  });
  return {
    client,
    partition,
    posts,
    async close() {
      port1.close();
      port2.close();
      await partition.close();
    },
  };
}

const sub = (to: string[], text: string) => ({ from: 'a@example.test', to, message: Buffer.from(`Subject: ${text}\r\n\r\n${text}\r\n`), via: 'smtp' as const });

test('a submission resolves with its id only once the message is in the spool', async () => {
  const p = await pair();
  const { id } = await p.client.submit({ ...sub(['b@example.test'], 'one'), id: 'fixed-id-1' });
  expect(id).toBe('fixed-id-1');
  const entry = p.partition.get(id)!;
  const { envelope, body } = await p.partition.read(entry);
  expect(envelope).toMatchObject({ from: 'a@example.test', to: ['b@example.test'], via: 'smtp' });
  expect(body.toString()).toBe('Subject: one\r\n\r\none\r\n');
  await p.close();
});

test('submissions of one turn cross the port as one batch, and each gets its own answer', async () => {
  const p = await pair();
  const results = await Promise.all([1, 2, 3, 4, 5].map((i) => p.client.submit(sub([`r${i}@example.test`], `m${i}`))));
  expect(p.posts.filter((m) => m.type === 'submit')).toHaveLength(1);
  expect(new Set(results.map((r) => r.id)).size).toBe(5);
  for (const [i, r] of results.entries()) expect((await p.partition.read(p.partition.get(r.id)!)).envelope.to).toEqual([`r${i + 1}@example.test`]);
  await p.close();
});

test('a body that owns its memory is moved, not copied; a pooled one is copied and stays usable', async () => {
  const p = await pair();
  const owned = Buffer.from(new ArrayBuffer(64));
  owned.write('Subject: owned\r\n\r\nx\r\n');
  const pooled = Buffer.from('Subject: pooled\r\n\r\ny\r\n'); // from Node's shared pool
  expect(pooled.byteLength).toBeLessThan(pooled.buffer.byteLength);
  const a = p.client.submit({ ...sub(['b@example.test'], ''), message: owned });
  const b = p.client.submit({ ...sub(['b@example.test'], ''), message: pooled });
  await Promise.all([a, b]);
  expect(owned.buffer.byteLength).toBe(0); // detached: its memory went to the other end
  expect(pooled.toString()).toContain('pooled');
  await p.close();
});

test('a refusal comes back as an IntakeError with its codes, and the spool is untouched', async () => {
  const p = await pair();
  const err = await p.client.submit(sub(['not an address'], 'bad')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(IntakeError);
  expect(err).toMatchObject({ reason: 'bad-recipient', smtpCode: 553, enhanced: '5.1.3', httpStatus: 422 });
  expect(p.partition.size).toBe(0);
  await p.close();
});

test('when the queue thread is gone, pending and later submissions fail rather than hang', async () => {
  const p = await pair();
  const pending = p.client.submit(sub(['b@example.test'], 'lost'));
  p.client.close(new Error('queue thread stopped'));
  await expect(pending).rejects.toThrow('queue thread stopped');
  await expect(p.client.submit(sub(['b@example.test'], 'later'))).rejects.toThrow('queue thread stopped');
  await p.close();
});

test('withHeader builds a body that owns its memory, so it moves rather than copies', () => {
  const body = withHeader('Received: x\r\n', Buffer.from('Subject: s\r\n\r\nb\r\n'));
  expect(body.toString()).toBe('Received: x\r\nSubject: s\r\n\r\nb\r\n');
  expect(body.byteOffset).toBe(0);
  expect(body.byteLength).toBe(body.buffer.byteLength);
});
