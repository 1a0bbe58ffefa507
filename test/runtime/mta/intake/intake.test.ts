// Intake.submit, the one door for SMTP and HTTP: what it accepts must be
// deliverable through the proxy link (its envelope rule and its frame limit).
import { Intake, IntakeError } from '../../../../runtime/mta/intake/intake';
import { MAX_TRANSACTION_BODY } from '../../../../runtime/shared/proxy-protocol/envelope';
import { TEST_TOKEN, testConfig } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
let h: IntakeHarness;
beforeAll(async () => {
  h = await startIntake(testConfig(), dir);
});
afterAll(() => h.close());

/** An intake whose configured size limit is above what the proxy link carries. */
function bigIntake(): Intake {
  const config = testConfig();
  return new Intake(h.partition, { ...config, smtp: { ...config.smtp, maxMessageSize: 2 * MAX_TRANSACTION_BODY } });
}

const message = Buffer.from('Subject: t\r\n\r\nbody\r\n');

async function refusal(p: Promise<unknown>): Promise<IntakeError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IntakeError);
  return err as IntakeError;
}

describe('Intake.submit', () => {
  test('control characters in a quoted local part are refused, and nothing is stored', async () => {
    const before = h.partition.stats().entries;
    const rcpt = await refusal(h.intake.submit({ from: 'a@example.test', to: ['"a\x00\x1b[31m"@x.test'], message, via: 'http' }));
    expect(rcpt).toMatchObject({ reason: 'bad-recipient', smtpCode: 553, httpStatus: 422 });
    const sender = await refusal(h.intake.submit({ from: '"\x1b"@example.test', to: ['b@x.test'], message, via: 'http' }));
    expect(sender).toMatchObject({ reason: 'bad-sender', smtpCode: 553 });
    expect(h.partition.stats().entries).toBe(before);
  });

  test('the proxy frame limit binds even when max_message_size is larger', async () => {
    // calloc'd and refused before any I/O: costs address space, not memory.
    const err = await refusal(bigIntake().submit({ from: 'a@example.test', to: ['b@x.test'], message: Buffer.alloc(MAX_TRANSACTION_BODY + 1), via: 'http' }));
    expect(err).toMatchObject({ reason: 'oversize', smtpCode: 552 });
  });

  test('a message under the size limit whose recipients would overflow the proxy frame is refused', async () => {
    const to = Array.from({ length: 5 }, (_, i) => `${'r'.repeat(60)}${i}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(40)}.test`);
    const err = await refusal(bigIntake().submit({ from: 'a@example.test', to, message: Buffer.alloc(MAX_TRANSACTION_BODY - 1000), via: 'http' }));
    expect(err).toMatchObject({ reason: 'oversize', smtpCode: 552, httpStatus: 413, message: 'the message and its recipients exceed what one proxy frame carries' });
  });

  test('the HTTP API goes through the same check: 422, nothing queued', async () => {
    const res = await fetch(`${h.httpUrl}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'a@example.test', to: ['"a\u0000\u001b[31m"@x.test'], raw: 'Subject: x\r\n\r\ny\r\n' }),
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: { code: 'bad_recipient' } });
    const res2 = await fetch(`${h.httpUrl}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'a@example.test', to: ['"a b"@x.test'], raw: 'Subject: x\r\n\r\ny\r\n' }),
    });
    expect(res2.status).toBe(422);
  });
});
