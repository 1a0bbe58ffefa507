// The SMTP session engine: over-long command lines (no command smuggled out
// of their tail, one answer each) and AUTH failure limits per session and per
// client address. Most tests run a session on its own server with stub
// handlers, an injected failure table and clock (and, where the split of
// the reads matters, the reads fed to it as they would arrive); the rest go
// through the real listener.
import { createServer, type Server, type Socket } from 'node:net';
import { AuthFailures } from '../../../../../runtime/mta/intake/smtp/auth-failures';
import { reply } from '../../../../../runtime/mta/intake/smtp/reply';
import { MAX_COMMAND_LINE, SmtpSession, type SessionHandlers, type SessionOptions } from '../../../../../runtime/mta/intake/smtp/session';
import { MAX_TRANSACTION_BODY } from '../../../../../runtime/shared/proxy-protocol/envelope';
import { testConfig } from '../../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../../helpers/intake-harness';
import { waitUntil } from '../../../../helpers/proxy-fixtures';
import { SmtpDialog } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';

describe('over-long command lines', () => {
  const dir = tempDir();
  let h: IntakeHarness;
  beforeAll(async () => {
    h = await startIntake(testConfig(), dir);
  });
  afterAll(() => h.close());

  async function session(): Promise<SmtpDialog> {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    expect((await s.command('EHLO p.test')).code).toBe(250);
    return s;
  }

  test('a 1 MB line sent in many writes gets exactly one answer', async () => {
    const s = await session();
    const chunk = Buffer.alloc(64 * 1024, 'A');
    for (let i = 0; i < 16; i++) s.send(chunk);
    s.send('MAIL FROM:<smuggled@example.test>\r\nNOOP\r\n');
    expect((await s.reply()).code).toBe(500);
    expect((await s.reply()).text).toBe('2.0.0 Ok');
    expect((await s.command('RCPT TO:<b@example.test>')).code).toBe(503);
    await s.quit();
  });

  test('a line of exactly the limit (CRLF included) is a command; one byte more is too long', async () => {
    const s = await session();
    // MAX_COMMAND_LINE counts the CRLF.
    const fits = `NOOP ${'x'.repeat(MAX_COMMAND_LINE - 7)}`;
    expect((await s.command(fits)).code).toBe(250);
    expect((await s.command(`${fits}x`)).code).toBe(500);
    await s.quit();
  });

  test('over-long lines count as bad commands: the tenth closes the session', async () => {
    const s = await session();
    s.send(`${'y'.repeat(MAX_COMMAND_LINE)}\r\n`.repeat(10));
    for (let i = 0; i < 9; i++) expect((await s.reply()).code).toBe(500);
    expect((await s.reply()).code).toBe(421);
    await waitUntil(() => s.closed);
  });
});

describe('sessions with stub handlers', () => {
  let server: Server;
  let port = 0;
  let now = 0;
  let checks: string[] = [];
  let table: AuthFailures;
  let options: Partial<SessionOptions> = {};
  let serverSide: Socket | undefined;
  let releaseAuth: (() => void) | undefined;
  // Checks whose password starts with "held" wait for the gate.
  let openGate: () => void = () => undefined;
  let gate: Promise<void> = Promise.resolve();
  const handlers: SessionHandlers = {
    onConnect: () => undefined,
    onAuth: async (_s, user, password) => {
      checks.push(`${user}:${password}`);
      if (password === 'hold') await new Promise<void>((release) => (releaseAuth = release));
      if (password.startsWith('held')) await gate;
      return password === 'right' || password === 'held-right' ? undefined : reply(535, '5.7.8', 'authentication failed');
    },
    onMailFrom: () => undefined,
    onRcptTo: () => undefined,
    onData: async () => reply(250, '2.0.0', 'Ok'),
    onOversize: () => undefined,
    onClose: () => undefined,
  };
  const plain = (password: string): string => `AUTH PLAIN ${Buffer.from(`\0alice\0${password}`).toString('base64')}\r\n`;

  beforeAll(async () => {
    server = createServer((socket) => {
      serverSide = socket;
      new SmtpSession(
        socket,
        {
          hostname: 'mta.test',
          banner: 'test',
          maxMessageSize: 1 << 20,
          maxRecipients: 10,
          socketTimeoutMs: 60_000,
          implicitTls: false,
          allowStartTls: false,
          allowInsecureAuth: true,
          expectProxy: false,
          remoteAddress: '192.0.2.7',
          authFailures: table,
          ...options,
        },
        handlers,
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    now = 1_000_000;
    checks = [];
    options = {};
    releaseAuth = undefined;
    gate = new Promise<void>((open) => (openGate = open));
    table = new AuthFailures({ max: 5, leakMs: 60_000, maxAddresses: 100 }, () => now);
  });

  async function session(): Promise<SmtpDialog> {
    const s = await SmtpDialog.open(port);
    await s.reply();
    await s.command('EHLO c.test');
    return s;
  }

  test('60 pipelined wrong passwords, then the right one: 535, 535, 421 and closed after three checks', async () => {
    const s = await session();
    s.send(plain('wrong').repeat(60) + plain('right'));
    expect((await s.reply()).text).toBe('5.7.8 authentication failed');
    expect((await s.reply()).code).toBe(535);
    expect(await s.reply()).toMatchObject({ code: 421, text: '4.7.0 too many authentication failures, closing connection' });
    await waitUntil(() => s.closed);
    expect(checks).toHaveLength(3);
  });

  test('a right password within the allowance still works', async () => {
    const s = await session();
    expect((await s.command(plain('wrong').trim())).code).toBe(535);
    expect((await s.command(plain('right').trim())).code).toBe(235);
    await s.quit();
  });

  test('failures add up across sessions per address; a blocked address is refused without a password check, until it drains', async () => {
    const a = await session();
    a.send(plain('w1') + plain('w2') + plain('w3'));
    expect([(await a.reply()).code, (await a.reply()).code, (await a.reply()).code]).toEqual([535, 535, 421]);
    const b = await session();
    expect((await b.command(plain('w4').trim())).code).toBe(535);
    // The fifth failure spends the address's allowance: 421 in place of 535.
    expect(await b.command(plain('w5').trim())).toMatchObject({ code: 421, text: '4.7.0 too many authentication failures from your address, try again later' });
    await waitUntil(() => b.closed);
    const c = await session();
    expect((await c.command(plain('right').trim())).code).toBe(421);
    await waitUntil(() => c.closed);
    expect(checks).toHaveLength(5);
    now += 60_000;
    const d = await session();
    expect((await d.command(plain('right').trim())).code).toBe(235);
    expect(checks).toHaveLength(6);
    await d.quit();
  });

  /** 20 sessions from one address send AUTH at once; resolves once every one has asked for a check slot. */
  async function twentyAtOnce(password: string): Promise<{ sessions: SmtpDialog[]; asked: () => number }> {
    const sessions: SmtpDialog[] = [];
    for (let i = 0; i < 20; i++) sessions.push(await session());
    let asked = 0;
    const acquire = table.acquire.bind(table);
    table.acquire = (address) => {
      asked++;
      return acquire(address);
    };
    for (const s of sessions) s.send(plain(password));
    await waitUntil(() => asked === 20, 5_000, () => `${asked} sessions asked for a slot, ${checks.length} passwords checked`);
    return { sessions, asked: () => asked };
  }

  test('20 parallel sessions from one address get no more guesses in flight than the address has left (5), then 421', async () => {
    const { sessions } = await twentyAtOnce('held-wrong');
    expect(checks).toHaveLength(5);
    expect(table.checking('192.0.2.7')).toBe(5);
    openGate();
    const replies = await Promise.all(sessions.map((s) => s.reply()));
    // As one session's five failures would: four 535s, the fifth spends the allowance; the fifteen that waited never get a check.
    const count = (text: string): number => replies.filter((r) => r.text === text).length;
    expect([count('5.7.8 authentication failed'), count('4.7.0 too many authentication failures from your address, try again later')]).toEqual([4, 16]);
    expect(checks).toHaveLength(5);
    expect(table.checking('192.0.2.7')).toBe(0);
    expect(table.blocked('192.0.2.7')).toBe(true);
    for (const s of sessions) s.destroy();
  });

  test('20 parallel sessions from one address with the right password all get in: checks past the allowance wait, they are not refused', async () => {
    const { sessions } = await twentyAtOnce('held-right');
    expect(checks).toHaveLength(5);
    openGate();
    for (const s of sessions) expect((await s.reply()).code).toBe(235);
    expect(checks).toHaveLength(20);
    expect(table.blocked('192.0.2.7')).toBe(false);
    expect(table.checking('192.0.2.7')).toBe(0);
    for (const s of sessions) await s.quit();
  });

  test('the tail of a 5 KB line split over two reads is not run as a command: one 500, no MAIL smuggled', async () => {
    const s = await session();
    // Reads exactly as the attacker's segments arrived: the first fills the line buffer, the second ends the line.
    serverSide!.emit('data', Buffer.from(`NOOP ${'x'.repeat(MAX_COMMAND_LINE + 4)}`));
    serverSide!.emit('data', Buffer.from('MAIL FROM:<smuggled@example.test>\r\nRCPT TO:<b@example.test>\r\n'));
    expect(await s.reply()).toMatchObject({ code: 500, text: '5.5.2 line too long' });
    expect((await s.reply()).text).toBe('5.5.1 need MAIL command');
    await s.quit();
  });

  test('while a handler runs, a client streaming input gets its socket paused instead of a growing buffer', async () => {
    const s = await session();
    s.send(plain('hold'));
    await waitUntil(() => releaseAuth !== undefined);
    const line = Buffer.alloc(8 * 1024 * 1024, 'z');
    s.send(line);
    s.send('\r\nNOOP\r\n');
    await waitUntil(() => serverSide!.isPaused());
    releaseAuth!();
    expect((await s.reply()).code).toBe(535);
    expect((await s.reply()).text).toBe('5.5.2 line too long');
    expect((await s.reply()).text).toBe('2.0.0 Ok');
    expect(serverSide!.isPaused()).toBe(false);
    await s.quit();
  });

  test('an over-long line inside an AUTH exchange ends the exchange, not the session', async () => {
    const s = await session();
    expect((await s.command('AUTH PLAIN')).code).toBe(334);
    expect(await s.command('A'.repeat(MAX_COMMAND_LINE + 10))).toMatchObject({ code: 500, text: '5.5.6 authentication exchange line is too long' });
    expect((await s.command('NOOP')).code).toBe(250);
    await s.quit();
  });

  test('SIZE never advertises more than the proxy link can carry', async () => {
    options = { maxMessageSize: 2 * MAX_TRANSACTION_BODY };
    const s = await SmtpDialog.open(port);
    await s.reply();
    expect((await s.command('EHLO c.test')).text).toContain(`SIZE ${MAX_TRANSACTION_BODY}`);
    expect((await s.command(`MAIL FROM:<a@b.test> SIZE=${MAX_TRANSACTION_BODY + 1}`)).code).toBe(552);
    await s.quit();
  });
});
