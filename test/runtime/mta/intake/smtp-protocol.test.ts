import { once } from 'node:events';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { DataReader } from '../../../../runtime/mta/intake/smtp/data-reader';
import { testConfig } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { SmtpDialog } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

describe('DataReader', () => {
  const read = (chunks: string[]): { message?: string; rest?: string } => {
    const r = new DataReader(1 << 20);
    for (let i = 0; i < chunks.length; i++) {
      const rest = r.push(Buffer.from(chunks[i], 'latin1'));
      if (rest !== undefined) return { message: r.message().toString('latin1'), rest: rest.toString('latin1') + chunks.slice(i + 1).join('') };
    }
    return {};
  };

  test('ends at CRLF.CRLF, keeps the last line break, returns what follows', () => {
    expect(read(['Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n'])).toEqual({ message: 'Subject: a\r\n\r\nbody\r\n', rest: 'QUIT\r\n' });
  });

  test('finds the terminator split across any chunk boundary', () => {
    const whole = 'line1\r\nline2\r\n.\r\nNOOP\r\n';
    for (let cut = 1; cut < whole.length - 1; cut++) {
      expect(read([whole.slice(0, cut), whole.slice(cut)])).toEqual({ message: 'line1\r\nline2\r\n', rest: 'NOOP\r\n' });
    }
  });

  test('an empty message and a leading dot line', () => {
    expect(read(['.\r\n'])).toEqual({ message: '', rest: '' });
    expect(read(['..hidden\r\n.\r\n'])).toEqual({ message: '.hidden\r\n', rest: '' });
  });

  test('undoes dot-stuffing and ignores a bare-LF dot (no smuggling)', () => {
    expect(read(['a\r\n..b\r\n...\r\nc\n.\nd\r\n.\r\n'])).toEqual({ message: 'a\r\n.b\r\n..\r\nc\n.\nd\r\n', rest: '' });
  });

  test('stops keeping bytes past the limit but still finds the end', () => {
    const r = new DataReader(10);
    expect(r.push(Buffer.from('0123456789abcdef\r\n'))).toBeUndefined();
    expect(r.push(Buffer.from('.\r\nRSET\r\n'))?.toString()).toBe('RSET\r\n');
    expect(r.oversize).toBe(true);
  });
});

describe('SMTP sessions', () => {
  const dir = tempDir();
  let h: IntakeHarness;
  beforeAll(async () => {
    h = await startIntake(testConfig(), dir);
  });
  afterAll(() => h.close());

  test('a pipelined transaction is answered in order, one reply per command', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    await s.command('EHLO p.test');
    s.send('MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n');
    expect((await s.reply()).code).toBe(250);
    expect((await s.reply()).code).toBe(250);
    expect((await s.reply()).code).toBe(250);
    expect((await s.reply()).code).toBe(354);
    s.send('Subject: p\r\n\r\nx\r\n.\r\nMAIL FROM:<a@example.test>\r\n');
    expect((await s.reply()).text).toMatch(/^2\.0\.0 Ok: queued as/);
    expect((await s.reply()).code).toBe(250);
    await s.quit();
  });

  test('commands pipelined after STARTTLS in the clear are discarded', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    await s.command('EHLO p.test');
    s.send('STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n');
    expect((await s.reply()).code).toBe(220);
    // (SmtpDialog.starttls expects to send the command itself; do the upgrade by hand.)
    const sock = (s as unknown as { socket: import('node:net').Socket }).socket;
    sock.removeAllListeners('data');
    const secure = tlsConnect({ socket: sock, rejectUnauthorized: false });
    const replies: string[] = [];
    secure.on('data', (d: Buffer) => replies.push(d.toString()));
    await new Promise((r) => secure.once('secureConnect', r));
    secure.write('MAIL FROM:<a@example.test>\r\n');
    await new Promise((r) => setTimeout(r, 200));
    // The injected MAIL was dropped, so this one is refused for want of EHLO, not as nested.
    expect(replies.join('')).toMatch(/^503 5\.5\.1 send HELO\/EHLO first/);
    secure.destroy();
  });

  test('ten unknown commands close the session', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    for (let i = 0; i < 9; i++) expect((await s.command('FOO')).code).toBe(500);
    expect((await s.command('FOO')).code).toBe(421);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.closed).toBe(true);
  });

  test('AUTH LOGIN works in two steps and can be cancelled', async () => {
    const s = await SmtpDialog.open(h.smtpPort);
    await s.reply();
    await s.command('EHLO p.test');
    await s.starttls();
    await s.command('EHLO p.test');
    expect((await s.command('AUTH LOGIN')).code).toBe(334);
    expect((await s.command('*')).code).toBe(501);
    expect((await s.command('AUTH LOGIN')).code).toBe(334);
    expect((await s.command(Buffer.from('alice').toString('base64'))).code).toBe(334);
    expect((await s.command(Buffer.from('wonderland').toString('base64'))).code).toBe(235);
    await s.quit();
  });
});

describe('PROXY protocol and per-client limits', () => {
  const dir2 = tempDir();
  let h2: IntakeHarness;
  beforeAll(async () => {
    const config = testConfig({ relayFrom: ['203.0.113.0/24'] });
    config.smtp.trustedProxies = ['127.0.0.3/32'];
    config.smtp.maxConnectionsPerClient = 2;
    h2 = await startIntake(config, dir2);
  });
  afterAll(() => h2.close());

  test('a trusted load balancer passes the client address, which then decides relay', async () => {
    const s = await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.3');
    s.send('PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n');
    expect((await s.reply()).code).toBe(220);
    const ehlo = await s.command('EHLO lb-client.test');
    expect(ehlo.text).toContain('[203.0.113.7]');
    const r = await s.transaction('a@example.test', ['b@example.test'], 'Subject: via lb\r\n\r\nx');
    expect(r.code).toBe(250);
    const { body } = await h2.partition.read(h2.partition.get(/queued as (\S+)/.exec(r.text)![1])!);
    expect(body.toString()).toMatch(/^Received: from lb-client\.test \(\[203\.0\.113\.7\]\)/);
    await s.quit();
  });

  test('a PROXY header from anyone else is just a bad command, and relay stays closed', async () => {
    const s = await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.4');
    expect((await s.reply()).code).toBe(220);
    expect((await s.command('PROXY TCP4 203.0.113.7 127.0.0.1 40000 25')).code).toBe(500);
    await s.command('EHLO spoof.test');
    await s.command('MAIL FROM:<a@example.test>');
    expect((await s.command('RCPT TO:<b@example.test>')).code).toBe(554);
    await s.quit();
  });

  test('the third session from one address gets 421 while two are open', async () => {
    const open = [await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.5'), await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.5')];
    for (const s of open) expect((await s.reply()).code).toBe(220);
    const third = await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.5');
    const r = await third.reply();
    expect(r.code).toBe(421);
    expect(r.text).toMatch(/^4\.7\.0 too many connections from your address/);
    for (const s of open) await s.quit();
    await new Promise((res) => setTimeout(res, 100));
    const again = await SmtpDialog.open(h2.smtpPort, '127.0.0.1', '127.0.0.5');
    expect((await again.reply()).code).toBe(220);
    await again.quit();
  });
});

describe('the listener-wide connection limit', () => {
  const dir3 = tempDir();
  let h3: IntakeHarness;
  beforeAll(async () => {
    const config = testConfig();
    config.smtp.maxConnections = 1;
    h3 = await startIntake(config, dir3);
  });
  afterAll(() => h3.close());

  test('past it a client gets 421, and one that never closes its side is closed for it', async () => {
    const first = await SmtpDialog.open(h3.smtpPort);
    expect((await first.reply()).code).toBe(220);
    // Half-open on purpose: this client would keep the connection forever.
    const over = connect({ port: h3.smtpPort, host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    over.on('data', (d: Buffer) => (got += d.toString()));
    over.on('error', () => undefined);
    await once(over, 'end');
    expect(got).toBe('421 4.7.0 too many connections, try again later\r\n');
    // Past the linger the server has let go of its socket: what the client
    // sends now is answered with a reset, which its next write meets.
    await new Promise((r) => setTimeout(r, 1500));
    const closed = new Promise((r) => over.once('close', r));
    over.write('NOOP\r\n');
    await new Promise((r) => setTimeout(r, 200));
    over.write('NOOP\r\n');
    await closed;
    await first.quit();
  });
});
