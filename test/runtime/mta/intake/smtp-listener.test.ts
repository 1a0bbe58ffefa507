import { testConfig } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { SmtpDialog, message } from '../../../helpers/smtp-dialog';
import { swaks } from '../../../helpers/swaks';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
let h: IntakeHarness;

beforeAll(async () => {
  h = await startIntake(testConfig({ extra: 'smtp_extra: 1'.replace('smtp_extra: 1', '') }), dir);
});
afterAll(() => h.close());

async function session(localAddress?: string): Promise<SmtpDialog> {
  const s = await SmtpDialog.open(h.smtpPort, '127.0.0.1', localAddress);
  expect((await s.reply()).code).toBe(220);
  expect((await s.command('EHLO client.test')).code).toBe(250);
  return s;
}

/** After a refusal the listener must still take the next message on the same session. */
async function expectNextAccepted(s: SmtpDialog): Promise<void> {
  const before = h.partition.size;
  const r = await s.transaction('a@example.test', ['b@example.test'], message('next'));
  expect(r.code).toBe(250);
  expect(h.partition.size).toBe(before + 1);
}

describe('SMTP intake', () => {
  test('250 comes with the queue id, and the message is in the spool with a Received header', async () => {
    const s = await session();
    const r = await s.transaction('a@example.test', ['b@example.test'], message('hello', 'body text'));
    expect(r.code).toBe(250);
    const id = /queued as (\S+)/.exec(r.text)![1];
    const entry = h.partition.get(id)!;
    const { envelope, body } = await h.partition.read(entry);
    expect(envelope).toMatchObject({ from: 'a@example.test', to: ['b@example.test'], via: 'smtp' });
    expect(body.toString()).toMatch(/^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mta\.test\.example \(Volley\) with ESMTP id /);
    expect(body.toString()).toContain('body text');
    await s.quit();
  });

  test('QUIT gets 221, then the server closes with a FIN, not a reset', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    expect((await s.reply()).code).toBe(220);
    const end = new Promise<string>((resolve) => {
      s.socket.once('end', () => resolve('fin'));
      s.socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    s.send('QUIT\r\n');
    expect(await s.reply()).toMatchObject({ code: 221 });
    expect(await end).toBe('fin');
    s.destroy();
  });

  test('EHLO advertises the extensions injectors rely on', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    const r = await s.command('EHLO client.test');
    for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'SIZE 65536']) expect(r.text).toContain(ext);
    await s.quit();
  });

  test.each([
    ['a bare LF', 'line one\nline two', 550, '5.6.0', /bare <LF>/],
    ['a NUL byte', 'nul\u0000here', 550, '5.6.0', /NUL/],
    ['a line over 998 characters', 'x'.repeat(1200), 550, '5.6.0', /longer than 998/],
  ])('a message with %s is refused', async (_name, body, code, enhanced, text) => {
    const s = await session();
    const before = h.partition.size;
    const r = await s.transaction('a@example.test', ['b@example.test'], message('bad', body));
    expect(r.code).toBe(code);
    expect(r.text.startsWith(enhanced)).toBe(true);
    expect(r.text).toMatch(text);
    expect(h.partition.size).toBe(before);
    await expectNextAccepted(s);
    await s.quit();
  });

  test('an over-long command line is refused with 500 and the listener stays up', async () => {
    const s = await session();
    const r = await s.command(`MAIL FROM:<${'a'.repeat(5000)}@example.test>`);
    expect([500, 501]).toContain(r.code);
    await s.quit();
    const t = await session();
    await expectNextAccepted(t);
    await t.quit();
  });

  test('invalid addresses get 553 with 5.1.7 (sender) and 5.1.3 (recipient)', async () => {
    const s = await session();
    // What is not MAIL FROM:<...> at all is a syntax error.
    expect((await s.command('MAIL FROM: a@example.test')).code).toBe(501);
    expect((await s.command('MAIL FROM:<not an address>')).code).toBe(553);
    // A local part over 64 octets (RFC 5321 4.5.3.1.1).
    const m = await s.command(`MAIL FROM:<${'l'.repeat(65)}@example.test>`);
    expect(m.code).toBe(553);
    expect(m.text).toMatch(/^5\.1\.7 /);
    expect((await s.command('MAIL FROM:<a@example.test>')).code).toBe(250);
    const r = await s.command(`RCPT TO:<${'l'.repeat(65)}@example.test>`);
    expect(r.code).toBe(553);
    expect(r.text).toMatch(/^5\.1\.3 /);
    expect((await s.command('RSET')).code).toBe(250);
    await expectNextAccepted(s);
    await s.quit();
  });

  test('oversize mail is refused with 552, both by SIZE= and by what arrives', async () => {
    const s = await session();
    const declared = await s.command('MAIL FROM:<a@example.test> SIZE=999999');
    expect(declared.code).toBe(552);
    const before = h.partition.size;
    const r = await s.transaction('a@example.test', ['b@example.test'], message('big', ('y'.repeat(900) + '\r\n').repeat(100)));
    expect(r.code).toBe(552);
    expect(h.partition.size).toBe(before);
    await expectNextAccepted(s);
    await s.quit();
  });

  test('the recipient after the limit gets 452 4.5.3', async () => {
    const s = await session();
    await s.command('MAIL FROM:<a@example.test>');
    for (let i = 0; i < 5; i++) expect((await s.command(`RCPT TO:<r${i}@example.test>`)).code).toBe(250);
    const r = await s.command('RCPT TO:<r5@example.test>');
    expect(r.code).toBe(452);
    expect(r.text).toMatch(/^4\.5\.3 /);
    await s.command('RSET');
    await s.quit();
  });

  test('commands out of order get 503', async () => {
    const s = await session();
    expect((await s.command('DATA')).code).toBe(503);
    expect((await s.command('RCPT TO:<b@example.test>')).code).toBe(503);
    await expectNextAccepted(s);
    await s.quit();
  });

  test('a client that vanishes mid-DATA leaves nothing behind and the next client is served', async () => {
    const before = h.partition.size;
    const s = await session();
    await s.command('MAIL FROM:<a@example.test>');
    await s.command('RCPT TO:<b@example.test>');
    expect((await s.command('DATA')).code).toBe(354);
    s.send('Subject: half\r\n\r\nthis message never ends');
    s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(h.partition.size).toBe(before);
    const t = await session();
    await expectNextAccepted(t);
    await t.quit();
  });

  test('relay is refused to an unauthenticated client outside relay_from (swaks)', async () => {
    const before = h.partition.size;
    const out = await swaks(['--server', `127.0.0.1:${h.smtpPort}`, '--local-interface', '127.0.0.2', '--from', 'a@example.test', '--to', 'b@example.test']);
    expect(out.output).toMatch(/<\*\* +554 5\.7\.1 <b@example\.test>: relay access denied/);
    expect(out.status).not.toBe(0);
    expect(h.partition.size).toBe(before);
  });

  test('an authenticated client outside relay_from may relay (swaks, STARTTLS + AUTH)', async () => {
    const before = h.partition.size;
    const out = await swaks(['--server', `127.0.0.1:${h.smtpPort}`, '--local-interface', '127.0.0.2', '--tls', '--auth-user', 'alice', '--auth-password', 'wonderland', '--from', 'a@example.test', '--to', 'b@example.test']);
    expect(out.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    expect(out.status).toBe(0);
    expect(h.partition.size).toBe(before + 1);
  });

  test('a wrong password gets 535 5.7.8, and AUTH before STARTTLS is refused', async () => {
    const s = await session();
    const early = await s.command(`AUTH PLAIN ${Buffer.from('\0alice\0wonderland').toString('base64')}`);
    expect(early.code).toBe(538);
    await s.starttls();
    await s.command('EHLO client.test');
    const wrong = await s.command(`AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`);
    expect(wrong.code).toBe(535);
    expect(wrong.text).toMatch(/^5\.7\.8 /);
    const right = await s.command(`AUTH PLAIN ${Buffer.from('\0alice\0wonderland').toString('base64')}`);
    expect(right.code).toBe(235);
    await s.quit();
  });

  test('every message names its Volley id in an X-Volley-Id header; one a client sent is replaced', async () => {
    const s = await session();
    const r = await s.transaction('a@example.test', ['b@example.test'], message('id', 'x', 'X-Volley-Id: 01FORGED000000000000000000\r\n'));
    expect(r.code).toBe(250);
    const id = /queued as (\S+)/.exec(r.text)![1];
    const { body } = await h.partition.read(h.partition.get(id)!);
    const head = body.toString().split('\r\n\r\n')[0];
    expect(head.match(/^x-volley-id:.*$/gim)).toEqual([`X-Volley-Id: ${id}`]);
    // Below the trace field, as a header of the message (a DSN quoting its headers carries it).
    expect(head).toMatch(/^Received: [\s\S]*\r\nX-Volley-Id: /);
    await s.quit();
  });

  test('X-Volley control headers choose the pool, carry metadata, and are removed', async () => {
    const s = await session();
    const r = await s.transaction('a@example.test', ['b@example.test'], message('ctl', 'x', 'X-Volley-Pool: p1\r\nX-Volley-Meta-Campaign: bf-2026\r\n'));
    expect(r.code).toBe(250);
    const { envelope, body } = await h.partition.read(h.partition.get(/queued as (\S+)/.exec(r.text)![1])!);
    expect(envelope.pool).toBe('p1');
    expect(envelope.meta).toEqual({ campaign: 'bf-2026' });
    // The control headers are gone; the one X-Volley field left is ours, naming the message.
    expect(body.toString()).not.toMatch(/x-volley-(pool|meta)/i);
    expect(body.toString().match(/^x-volley-[^\r]*/gim)).toEqual([`X-Volley-Id: ${envelope.id}`]);
    const unknown = await s.transaction('a@example.test', ['b@example.test'], message('ctl', 'x', 'X-Volley-VMTA: nope\r\n'));
    expect(unknown.code).toBe(550);
    expect(unknown.text).toMatch(/^5\.7\.1 unknown virtual MTA "nope"/);
    await expectNextAccepted(s);
    await s.quit();
  });
});

// Behind the lb: the limit is per client the PROXY header names; the lb's own
// checks (PROXY UNKNOWN) are never refused by it. trusted_proxies is a CIDR
// (on AWS the NLB subnets or the VPC), so clients can live inside it too.
describe('per-client limits behind a trusted proxy', () => {
  const dir2 = tempDir();
  let h2: IntakeHarness;
  beforeAll(async () => {
    const config = testConfig();
    config.smtp.trustedProxies = ['127.0.0.8/29'];
    config.smtp.maxConnectionsPerClient = 2;
    h2 = await startIntake(config, dir2);
  });
  afterAll(() => h2.close());

  async function viaProxy(header: string | Buffer): Promise<{ s: SmtpDialog; code: number; text: string }> {
    const s = await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.9');
    s.send(header);
    const r = await s.reply();
    return { s, code: r.code, text: r.text };
  }

  test('the limit counts the address the PROXY header names', async () => {
    const open = [await viaProxy('PROXY TCP4 127.0.0.61 127.0.0.1 40000 25\r\n'), await viaProxy('PROXY TCP4 127.0.0.61 127.0.0.1 40001 25\r\n')];
    for (const o of open) expect(o.code).toBe(220);
    const third = await viaProxy('PROXY TCP4 127.0.0.61 127.0.0.1 40002 25\r\n');
    expect(third.code).toBe(421);
    expect(third.text).toMatch(/too many connections from your address/);
    // Another client behind the same proxy is not affected.
    const other = await viaProxy('PROXY TCP4 127.0.0.62 127.0.0.1 40003 25\r\n');
    expect(other.code).toBe(220);
    for (const o of [...open, other]) await o.s.quit();
  });

  test('a client the header names inside the trusted CIDRs is limited like any other', async () => {
    const header = (port: number): string => `PROXY TCP4 127.0.0.12 127.0.0.1 ${port} 25\r\n`;
    const open = [await viaProxy(header(41000)), await viaProxy(header(41001))];
    for (const o of open) expect(o.code).toBe(220);
    const third = await viaProxy(header(41002));
    expect(third.code).toBe(421);
    expect(third.text).toMatch(/too many connections from your address/);
    for (const o of open) await o.s.quit();
  });

  test('the proxy\'s own connections (PROXY UNKNOWN, v2 LOCAL) are not counted: checks keep getting 220', async () => {
    const v2Local = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00]);
    const held = [];
    for (let i = 0; i < 4; i++) {
      const o = await viaProxy(i % 2 === 0 ? 'PROXY UNKNOWN\r\n' : v2Local);
      expect(o.code).toBe(220);
      held.push(o);
    }
    for (const o of held) await o.s.quit();
  });
});
