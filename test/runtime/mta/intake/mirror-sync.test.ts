// Intake under a sync HA mirror (mirror.mode: sync): nothing is acknowledged
// before the mirror's barrier resolves; when it fails (policy block, or no
// mirror daemon) SMTP answers 451 4.3.0 and HTTP 503 with a JSON error, and
// the message already written is withdrawn durably (a reopened spool does
// not hold it), so it is never delivered while the client retries elsewhere.
import { join } from 'node:path';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import type { SpoolEntry } from '../../../../runtime/mta/spool/types';
import { TEST_TOKEN, testConfig } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { SmtpDialog, message } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-intake-mirror-');
/** What the fake mirror answers next: resolve, or reject with this error. */
let answer: Error | undefined;
const order: string[] = [];
const mirror = {
  barrier: async (): Promise<string> => {
    order.push('barrier');
    if (answer) throw answer;
    return 'sync';
  },
};
let h: IntakeHarness;
const accepted: SpoolEntry[] = [];
beforeAll(async () => {
  h = await startIntake(testConfig({ relayFrom: ['127.0.0.0/8'] }), dir, join(dir, 'spool'), mirror);
  h.intake.on('accepted', (e: SpoolEntry) => {
    order.push('accepted');
    accepted.push(e);
  });
});
afterAll(() => h?.close());

async function smtp(to: string): Promise<{ code: number; text: string }> {
  const s = await SmtpDialog.open(h.smtpPort);
  await s.reply();
  await s.command('EHLO injector.test');
  const r = await s.transaction('a@example.test', [to], message('mirrored'));
  await s.quit();
  return r;
}

test('the barrier comes before the acknowledgement and before delivery hears of the message', async () => {
  answer = undefined;
  order.length = 0;
  const r = await smtp('ok@x.test');
  expect(r.code).toBe(250);
  expect(order).toEqual(['barrier', 'accepted']);
  expect(h.partition.size).toBe(1);
});

test('a barrier that fails: SMTP 451 4.3.0 and HTTP 503 (JSON), the written message withdrawn durably, delivery never told', async () => {
  answer = Object.assign(new Error('the secondary did not acknowledge within sync_timeout'), { code: 'EMIRRORSYNC' });
  const queued = h.partition.size;
  const before = accepted.length;
  const r = await smtp('refused@x.test');
  expect(r.code).toBe(451);
  expect(r.text).toMatch(/^4\.3\.0 .*HA mirror/);
  const res = await fetch(`${h.httpUrl}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from: 'a@example.test', to: ['refused-http@x.test'], raw: 'Subject: x\r\n\r\ny\r\n' }),
  });
  expect(res.status).toBe(503);
  expect(await res.json()).toMatchObject({ error: { code: 'mirror_unavailable' } });
  expect(accepted.length).toBe(before);
  expect(h.partition.size).toBe(queued);
  // Durable: the spool read again from its files holds only the acknowledged message.
  const again = await SpoolPartition.open({ dir: h.partition.dir, fsync: false });
  try {
    expect([...again.entries()].map((e) => e.to)).toEqual([['ok@x.test']]);
  } finally {
    await again.close();
  }
});
