// SMTP intake fuzz test (acceptance for issue 14): a bounded number of
// seeded sessions of random and adversarial command lines (0 B to 2 MB,
// binary, invalid UTF-8, over-long, pipelined in random-sized writes) and
// random bodies against the real listener. It checks that the intake
// answers exactly one reply per command line, keeps running, and accepts no
// message the spool or the proxy link would refuse: every accepted message
// is read back from disk by a fresh partition and replayed through a real
// proxy (authenticated link, the proxy's own SMTP client) to a scripted MX,
// which must receive exactly that envelope and those bytes. (Checking the
// envelope with transactionProblem alone could not fail: intake and the
// proxy call that same function.)
// Replay a failure with VOLLEY_FUZZ_SEED=<the printed seed>.
import { join } from 'node:path';
import { MAX_COMMAND_LINE } from '../../../../runtime/mta/intake/smtp/session';
import { SpoolPartition } from '../../../../runtime/mta/spool/partition';
import { ProxyConnector } from '../../../../runtime/mta/delivery/connect/proxy-connector';
import { testConfig } from '../../../helpers/config';
import { startIntake, type IntakeHarness } from '../../../helpers/intake-harness';
import { fuzzSeed, Prng } from '../../../helpers/prng';
import { captureLogger, newSecret, proxyTls, startProxy, waitUntil } from '../../../helpers/proxy-fixtures';
import { ScriptedMx } from '../../../helpers/scripted-mx';
import { SmtpDialog } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

const SESSIONS = 60;
const MAX_SIZE = 2 * 1024 * 1024;
// The session closes at its tenth bad command (unknown verb or over-long line).
const MAX_BAD = 10;
const LF = 0x0a;

const GOOD_ADDRESSES = ['a@example.test', 'first.last+tag@sub.example.test', '"quoted"@example.test', '"a\\"b"@example.test', 'ünï@exämple.test', 'root@localhost', 'x@[127.0.0.1]', '😀@example.test'];
const BAD_ADDRESSES = [
  '"a\x00\x1b[31m"@x.test',
  '"a b"@x.test',
  '"a<b"@x.test',
  'a\u0085@x.test',
  'a\u00a0b@x.test',
  'a@b@c',
  '@x.test',
  'a@',
  'a..b@x.test',
  '"\\\x07"@x.test',
  'a@-x.test',
  'a@x_y.test',
  `${'l'.repeat(65)}@x.test`,
  `a@${'d'.repeat(250)}.test`,
];

/** One command line and whether the session counts it as a bad command. */
interface Line {
  bytes: Buffer;
  bad: boolean;
}

/** Good ones often enough that transactions get through, so that what is accepted gets checked. */
function address(r: Prng): Buffer {
  const roll = r.next();
  if (roll < 0.6) return Buffer.from(r.pick(GOOD_ADDRESSES));
  if (roll < 0.8) return Buffer.from(r.pick(BAD_ADDRESSES));
  if (roll < 0.9) return Buffer.concat([r.bytes(r.int(1, 40), [LF, 0x3c, 0x3e]), Buffer.from('@example.test')]); // binary local part
  return r.bytes(r.logInt(0, 3000), [LF, 0x3c, 0x3e]);
}

/** A command the session knows (one reply each), with adversarial arguments. */
function knownCommand(r: Prng): Buffer {
  switch (r.int(0, 9)) {
    case 0:
      return Buffer.concat([Buffer.from(`${r.pick(['EHLO', 'HELO', 'ehlo'])} `), r.chance(0.7) ? Buffer.from('client.test') : r.bytes(r.logInt(0, 400), [LF])]);
    case 1:
    case 2:
    case 3:
      return mailFrom(r);
    case 4:
    case 5:
    case 6:
      return rcptTo(r);
    case 7:
      return Buffer.from(r.pick(['RSET', 'NOOP', 'HELP', 'VRFY postmaster', 'NOOP \x00\x01\x02']));
    case 8:
      // The listener wants TLS before AUTH: one 538 (or 503 before EHLO), never a 334 exchange.
      return Buffer.from(r.pick(['AUTH PLAIN AGFsaWNlAHdyb25n', 'AUTH LOGIN', 'AUTH CRAM-MD5']));
    default:
      return Buffer.concat([Buffer.from('NOOP '), r.bytes(r.logInt(0, MAX_COMMAND_LINE), [LF])]);
  }
}

function mailFrom(r: Prng): Buffer {
  const params = r.chance(0.6) ? '' : r.pick([' SIZE=100', ' SIZE=99999999999', ' SIZE=x', ' BODY=8BITMIME', ' BODY=BINARYMIME', ' SMTPUTF8', ' AUTH=<>', ' FOO=bar']);
  const verb = r.chance(0.9) ? r.pick(['MAIL FROM:<', 'mail from: <']) : 'MAIL FROM:';
  return Buffer.concat([Buffer.from(verb), r.chance(0.1) ? Buffer.alloc(0) : address(r), Buffer.from(`>${params}`)]);
}

function rcptTo(r: Prng): Buffer {
  return Buffer.concat([Buffer.from(r.chance(0.9) ? r.pick(['RCPT TO:<', 'rcpt to: <']) : 'RCPT TO:'), address(r), Buffer.from('>')]);
}

/** Any command line, known or bad; as `noise`, none that would end an open transaction. */
function commandLine(r: Prng, noise = false): Line {
  const roll = r.next();
  let bytes: Buffer;
  let unknownVerb = false;
  if (roll < 0.6) bytes = noise ? (r.chance(0.5) ? rcptTo(r) : Buffer.from(r.pick(['NOOP', 'HELP', 'VRFY x', 'AUTH LOGIN']))) : knownCommand(r);
  else if (roll < 0.75) {
    // No verb starts with X; the empty line has no verb at all.
    bytes = r.chance(0.2) ? Buffer.alloc(0) : Buffer.concat([Buffer.from('X'), r.bytes(r.logInt(0, 2000), [LF])]);
    unknownVerb = true;
  } else if (roll < 0.85) {
    // Right around the limit (which counts the CRLF), either side.
    bytes = Buffer.concat([Buffer.from('NOOP '), r.bytes(MAX_COMMAND_LINE - 7 + r.int(-3, 3), [LF])]);
  } else {
    // Over-long, up to 2 MB, ending in what would be a command of its own.
    bytes = Buffer.concat([r.bytes(r.logInt(MAX_COMMAND_LINE, MAX_SIZE), [LF]), Buffer.from('MAIL FROM:<smuggled@example.test>')]);
  }
  return { bytes, bad: unknownVerb || tooLong(bytes) };
}

const tooLong = (bytes: Buffer): boolean => bytes.length + 2 > MAX_COMMAND_LINE;
const known = (bytes: Buffer): Line => ({ bytes, bad: tooLong(bytes) });

/** A DATA section, dot-stuffed so that it ends only where we end it. */
function body(r: Prng): Buffer {
  let raw: Buffer;
  const roll = r.next();
  if (roll < 0.6) {
    const control = r.pick(['', '', '', '', 'X-Volley-Pool: p1\r\n', 'X-Volley-VMTA: nope\r\n', 'X-Volley-Meta-Tenant: t1\r\n']);
    raw = Buffer.from(`From: a@example.test\r\nTo: b@example.test\r\nSubject: fuzz\r\n${control}\r\n${'line\r\n'.repeat(r.int(0, 50))}`);
  } else if (roll < 0.8) {
    raw = r.bytes(r.logInt(0, MAX_SIZE));
  } else {
    raw = Buffer.from(`Subject: fuzz\r\n\r\n${r.pick(['bare\nLF', 'bare\rCR', 'nul\0', 'x'.repeat(1200), '.leading dot', '\r\n.\r\nQUIT'])}\r\n`, 'latin1');
  }
  const stuffed = Buffer.from(raw.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
  return Buffer.concat([stuffed, Buffer.from('\r\n.\r\n')]);
}

/** Writes `data` in random-sized pieces, as a pipelining client's segments arrive. */
function sendInPieces(r: Prng, s: SmtpDialog, data: Buffer): void {
  for (let at = 0; at < data.length; ) {
    const n = r.logInt(1, 256 * 1024);
    s.send(data.subarray(at, at + n));
    at += n;
  }
}

describe('SMTP intake fuzz', () => {
  const dir = tempDir();
  const proxyDir = tempDir('volley-fuzz-proxy-');
  let h: IntakeHarness;
  let open = false;
  beforeAll(async () => {
    h = await startIntake(testConfig(), dir);
    open = true;
  });
  afterAll(() => (open ? h.close() : undefined));

  test(`${SESSIONS} seeded sessions: one reply per line, no crash, nothing accepted the proxy would refuse`, async () => {
    const seed = fuzzSeed();
    console.log(`SMTP fuzz seed ${seed} (replay: VOLLEY_FUZZ_SEED=${seed})`);
    const r = new Prng(seed);
    const queued: string[] = [];
    let lines = 0;
    for (let n = 0; n < SESSIONS; n++) {
      const where = `seed ${seed}, session ${n}`;
      const s = await SmtpDialog.open(h.smtpPort);
      expect([where, (await s.reply()).code]).toEqual([where, 220]);
      let bad = 0;
      let closed = false;
      for (let round = r.int(1, 3); round > 0 && !closed; round--) {
        // A pipelined batch, cut after the line that ends the session: the
        // client sends nothing after it, so the 421 is never lost to a reset.
        // Mostly a transaction (MAIL, RCPTs) with noise between, else chaos.
        const batch: Line[] = [];
        const add = (line: Line): void => {
          if (closed) return;
          batch.push(line);
          if (line.bad && ++bad >= MAX_BAD) closed = true;
        };
        if (r.chance(0.7)) {
          if (r.chance(0.8)) add(known(Buffer.from('EHLO client.test')));
          add(known(mailFrom(r)));
          for (let i = r.int(1, 7); i > 0; i--) add(r.chance(0.7) ? known(rcptTo(r)) : commandLine(r, true));
        } else {
          for (let i = r.int(0, 20); i > 0; i--) add(commandLine(r));
        }
        sendInPieces(r, s, Buffer.concat(batch.flatMap((l) => [l.bytes, Buffer.from('\r\n')])));
        for (let i = 0; i < batch.length; i++) {
          const reply = await s.reply();
          lines++;
          const last = closed && i === batch.length - 1;
          expect([where, i, last ? reply.code : reply.code !== 421]).toEqual([where, i, last ? 421 : true]);
        }
        if (closed) break;
        const data = await s.command('DATA');
        lines++;
        if (data.code !== 354) {
          expect([where, data.code]).toEqual([where, 503]);
          continue;
        }
        sendInPieces(r, s, body(r));
        const end = await s.reply();
        lines++;
        const id = /queued as (\S+)/.exec(end.text);
        if (id) queued.push(id[1]);
        else expect([where, end.code >= 400]).toEqual([where, true]);
      }
      if (!closed) {
        expect([where, (await s.command('QUIT')).code]).toEqual([where, 221]);
        lines++;
      }
      await waitUntil(() => s.closed);
      // Nothing after the last expected reply: no line was answered twice.
      await expect(s.reply()).rejects.toThrow('unparsed: ""');
    }
    console.log(`SMTP fuzz: ${SESSIONS} sessions, ${lines} replies, ${queued.length} messages accepted`);

    // Still serving, and an ordinary message still goes through.
    const after = await SmtpDialog.open(h.smtpPort);
    await after.reply();
    await after.command('EHLO after.test');
    const ok = await after.transaction('a@example.test', ['b@example.test'], 'Subject: after\r\n\r\nfine');
    expect(ok.code).toBe(250);
    queued.push(/queued as (\S+)/.exec(ok.text)![1]);
    await after.quit();

    // Every accepted message is on disk (read back by a fresh partition, as
    // after a restart: no copy from memory), and goes out through the proxy.
    await h.close();
    open = false;
    const spool = await SpoolPartition.open({ dir: join(dir, 'spool'), recentBytes: 0 });
    try {
      expect([...spool.entries()].map((e) => e.id).sort()).toEqual([...queued].sort());
      const envelopes = await Promise.all(queued.map(async (id) => ({ id, ...(await spool.read(spool.get(id)!)) })));
      const carried = await replayThroughProxy(proxyDir, envelopes.map((e) => ({ id: e.id, from: e.envelope.from, to: e.envelope.to, message: e.body })));
      expect(carried.refused).toEqual([]);
      // What the MX received is each envelope and its bytes, in order (the
      // proxy's client ends a body without a final CRLF with one).
      expect(carried.received.map((m) => [m.from, m.to])).toEqual(envelopes.map((e) => [e.envelope.from, asMxRecords(e.envelope.to)]));
      carried.received.forEach((m, i) => {
        const sent = envelopes[i].body;
        const expected = sent.length === 0 || sent.subarray(-2).equals(Buffer.from('\r\n')) ? sent : Buffer.concat([sent, Buffer.from('\r\n')]);
        expect([envelopes[i].id, m.raw.equals(expected)]).toEqual([envelopes[i].id, true]);
      });
    } finally {
      await spool.close();
    }
  });
});

/**
 * The recipients as smtp-server (the ScriptedMx) records them: a repeated
 * address (the fuzz repeats RCPTs, and intake takes them) keeps its first
 * place and its last spelling, compared without case.
 */
function asMxRecords(to: string[]): string[] {
  const out: string[] = [];
  const at = new Map<string, number>();
  for (const rcpt of to) {
    const i = at.get(rcpt.toLowerCase());
    if (i === undefined) at.set(rcpt.toLowerCase(), out.push(rcpt) - 1);
    else out[i] = rcpt;
  }
  return out;
}

interface Outgoing {
  id: string;
  from: string;
  to: string[];
  message: Buffer;
}

/**
 * Sends each message through a real ProxyServer (over its authenticated
 * link, by its own SMTP client) to a ScriptedMx that takes everything, and
 * returns what the MX received and every recipient or message the way out refused.
 */
async function replayThroughProxy(dir: string, messages: Outgoing[]): Promise<{ received: ScriptedMx['messages']; refused: string[] }> {
  const tls = await proxyTls(dir);
  const secret = newSecret();
  const mx = new ScriptedMx();
  await mx.listen();
  const proxy = await startProxy({ name: 'proxy-fuzz', tls, secret, sendingIps: ['127.0.0.2'], logger: captureLogger().logger });
  const connector = new ProxyConnector({
    proxies: { '127.0.0.2': [{ host: '127.0.0.1', port: proxy.port, fingerprint: tls.fingerprint, name: 'fuzz' }] },
    secret,
    timeouts: { connectMs: 2_000, greetingMs: 2_000, commandMs: 5_000, dataInitMs: 5_000, dataBlockMs: 5_000, finalDotMs: 5_000 },
    logger: captureLogger().logger,
  });
  const refused: string[] = [];
  try {
    for (const m of messages) {
      try {
        const session = await connector.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, { ip: '127.0.0.2', helo: 'fuzz.test' }, { mode: 'may', policy: 'may' });
        try {
          const tx = await session.send(m.from, m.to, m.message);
          for (const r of tx.recipients) if (r.outcome !== 'delivered') refused.push(`${m.id} <${r.rcpt}>: ${r.outcome} ${r.reply.code} ${r.reply.text}`);
        } finally {
          session.close();
        }
      } catch (err) {
        refused.push(`${m.id}: ${(err as Error).message}`);
      }
    }
    return { received: mx.messages.slice(), refused };
  } finally {
    connector.close();
    await proxy.server.stop();
    await mx.close();
  }
}
