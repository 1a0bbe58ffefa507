// The Standard Webhooks side of the webhook sink, checked against the
// `standardwebhooks` reference implementation rather than against itself.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { batchId, parseSecret, readSecretFiles, signHeaders } from '../../../../../runtime/mta/events/sinks/webhook-signature';
import { newWebhookSecret } from '../../../../helpers/webhook-receiver';
import { tempDir } from '../../../../helpers/tmp';

describe('webhook signature', () => {
  const dir = tempDir();

  it('signs so that the reference implementation verifies, with every secret', () => {
    const secrets = [newWebhookSecret(), newWebhookSecret()];
    const keys = secrets.map((s, i) => parseSecret(s, `secret ${i}`));
    const body = Buffer.from('[{"event_id":"e1","event":"delivery","recipient":"rené@example.com"}]');
    const headers = signHeaders(keys, 'batch_x', Date.now(), body);
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    for (const s of secrets) expect(new Webhook(s).verify(body.toString(), headers)).toEqual(JSON.parse(body.toString()));
    // A receiver that does not hold either secret refuses it.
    expect(() => new Webhook(newWebhookSecret()).verify(body.toString(), headers)).toThrow(/No matching signature/);
  });

  it('gives a batch the same id for the same run of events, another for another', () => {
    expect(batchId(['a', 'b', 'c'])).toBe(batchId(['a', 'b', 'c']));
    expect(batchId(['a', 'b', 'c'])).not.toBe(batchId(['a', 'c']));
    expect(batchId(['a', 'b', 'c'])).not.toBe(batchId(['a', 'b', 'd']));
    expect(batchId(['a'])).toMatch(/^batch_[A-Za-z0-9_-]{27}$/);
  });

  it('refuses a secret that is not whsec_<base64> of 24..64 bytes, saying which file', () => {
    expect(() => parseSecret('hunter2', 'f1')).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET', message: expect.stringContaining('f1') }));
    expect(() => parseSecret('whsec_not base64!', 'f2')).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET' }));
    expect(() => parseSecret(`whsec_${Buffer.alloc(16, 1).toString('base64')}`, 'f3')).toThrow(/16 bytes/);
    expect(parseSecret(` whsec_${Buffer.alloc(32, 7).toString('base64')}\n`, 'f4')).toEqual(Buffer.alloc(32, 7));
  });

  it('names a secret file it cannot read', () => {
    const good = join(dir, 'good');
    writeFileSync(good, newWebhookSecret());
    expect(readSecretFiles([good])).toHaveLength(1);
    expect(() => readSecretFiles([good, join(dir, 'missing')])).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET', message: expect.stringContaining('missing') }));
    expect(() => readSecretFiles([])).toThrow(expect.objectContaining({ code: 'EWEBHOOKSECRET' }));
  });
});
