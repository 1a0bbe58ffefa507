// The test receiver's own check must be able to say no: otherwise every
// "signature verifies" in the webhook tests would prove nothing.

import https from 'node:https';
import { readFileSync } from 'node:fs';
import { signHeaders, parseSecret } from '../../runtime/mta/events/sinks/webhook-signature';
import { newWebhookSecret, startWebhookReceiver } from './webhook-receiver';
import { tempDir } from './tmp';

function post(url: string, ca: Buffer, headers: Record<string, string>, body: Buffer): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    const req = https.request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', (err) => resolve({ status: 0, error: (err as NodeJS.ErrnoException).code }));
    req.end(body);
  });
}

describe('webhook receiver (test helper)', () => {
  const dir = tempDir();

  it('records a forged signature as unverified, answers its script, resets and refuses bodies that do not decode', async () => {
    const receiver = await startWebhookReceiver({ dir, script: [{ status: 200 }, 'reset'] });
    try {
      const ca = readFileSync(receiver.caFile);
      const body = Buffer.from('[{"event_id":"x1"}]');
      const forged = signHeaders([parseSecret(newWebhookSecret(), 'other')], 'batch_1', Date.now(), body);
      expect(await post(receiver.url, ca, forged, body)).toEqual({ status: 200 });
      expect(receiver.requests[0]).toMatchObject({ id: 'batch_1', verified: [false], verifyError: expect.stringMatching(/No matching signature/) });
      const good = signHeaders([parseSecret(receiver.secrets[0], 'own')], 'batch_2', Date.now(), body);
      expect(await post(receiver.url, ca, good, body)).toEqual({ status: 0, error: 'ECONNRESET' });
      expect(receiver.requests[1]).toMatchObject({ verified: [true], action: 'reset' });
      expect(await post(receiver.url, ca, { ...good, 'content-encoding': 'gzip' }, body)).toEqual({ status: 400 });
      expect(receiver.requests[2].parseError).toBeDefined();
      expect([...receiver.acceptedCounts()]).toEqual([['x1', 1]]);
    } finally {
      await receiver.close();
    }
  });

  it('with bodies and signature checks off (the bench), still counts events and hands accepted ones to onAccepted', async () => {
    const seen: { ids: unknown[]; at: number }[] = [];
    const receiver = await startWebhookReceiver({ dir, verify: false, keepBodies: false, script: [{ status: 500 }], onAccepted: (events, at) => seen.push({ ids: events.map((e) => e.event_id), at }) });
    try {
      const ca = readFileSync(receiver.caFile);
      const body = Buffer.from('[{"event_id":"a"},{"event_id":"b"}]');
      expect(await post(receiver.url, ca, {}, body)).toEqual({ status: 500 });
      expect(await post(receiver.url, ca, {}, body)).toEqual({ status: 200 });
      expect(receiver.requests.map((r) => [r.eventCount, r.body, r.events, r.verified])).toEqual([[2, '', [], []], [2, '', [], []]]);
      expect(seen).toEqual([{ ids: ['a', 'b'], at: receiver.requests[1].receivedAt }]);
    } finally {
      await receiver.close();
    }
  });
});
