import { isAscii } from 'node:buffer';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { simpleParser } from 'mailparser';
import { ConnectError, type TlsaRecord, type TlsRequirement } from '../../../../runtime/shared/smtp/connector';
import { RFC5321_CLIENT_TIMEOUTS, SmtpClientSession, dotStuff, type OpenOptions } from '../../../../runtime/shared/smtp/client';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { startTlsMx, type StartTlsMx } from '../../../helpers/starttls-mx';
import { makeCa, makeLeaf, tlsaData, type TestCert } from '../../../helpers/test-pki';
import { tempDir } from '../../../helpers/tmp';
import { getFreePort } from '../../../helpers/postfix-tools';
import { pipeliningMx } from '../../../helpers/pipelining-mx';
import { ScriptedMx } from '../../../helpers/scripted-mx';

const source = { helo: 'client.test', ip: '127.0.0.1' };
const fast = { ...RFC5321_CLIENT_TIMEOUTS, connectMs: 2000, greetingMs: 500 };

async function kindOf(port: number): Promise<string> {
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);
    s.close();
    return 'connected';
  } catch (err) {
    return err instanceof ConnectError ? err.kind : `other: ${(err as Error).message}`;
  }
}

function rawServer(onConn: (s: import('node:net').Socket) => void): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer(onConn);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

test('dot-stuffing and the terminator', () => {
  expect(dotStuff(Buffer.from('a\r\n.b\r\n')).toString()).toBe('a\r\n..b\r\n.\r\n');
  expect(dotStuff(Buffer.from('.start\r\nend')).toString()).toBe('..start\r\nend\r\n.\r\n');
  expect(dotStuff(Buffer.from('')).toString()).toBe('.\r\n');
});

test('refused, silent, closed before the greeting and a 554 greeting are told apart', async () => {
  expect(await kindOf(await getFreePort())).toBe('refused');
  const silent = await rawServer(() => undefined);
  const closer = await rawServer((s) => s.destroy());
  const grumpy = await rawServer((s) => s.end('554 5.7.1 go away\r\n'));
  try {
    expect(await kindOf(silent.port)).toBe('timeout');
    expect(await kindOf(closer.port)).toBe('closed-before-greeting');
    expect(await kindOf(grumpy.port)).toBe('greeting-rejected');
  } finally {
    for (const s of [silent, closer, grumpy]) s.server.close();
  }
});

test('a pipelined transaction gets one result per recipient, and the session stays usable', async () => {
  const mx = new ScriptedMx({ rcpt: (r) => (r.startsWith('no@') ? [550, '5.1.1 no such user'] : undefined) });
  const port = await mx.listen();
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);
    const tx = await s.send('a@b.test', ['yes@c.test', 'no@c.test'], Buffer.from('Subject: x\r\n\r\n.dot line\r\n'));
    expect(tx.recipients.map((r) => [r.rcpt, r.reply.code, r.outcome])).toEqual([
      ['yes@c.test', 250, 'delivered'],
      ['no@c.test', 550, 'failed'],
    ]);
    const all = await s.send('a@b.test', ['no@c.test'], Buffer.from('x\r\n'));
    expect(all.recipients[0].outcome).toBe('failed');
    expect(s.usable).toBe(true);
    const again = await s.send('a@b.test', ['yes2@c.test'], Buffer.from('y\r\n'));
    expect(again.recipients[0].outcome).toBe('delivered');
    s.close();
    await mx.waitFor(2);
    expect(mx.messages[0].body).toContain('\r\n.dot line\r\n');
    expect(mx.connections).toBe(1);
  } finally {
    await mx.close();
  }
});

test('EHLO keywords are read: against a server offering them, the client pipelines and uses STARTTLS', async () => {
  const { startIntake } = await import('../../../helpers/intake-harness');
  const { testConfig } = await import('../../../helpers/config');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'volley-client-'));
  const h = await startIntake(testConfig({ relayFrom: ['127.0.0.0/8'] }), dir);
  try {
    const s = await SmtpClientSession.open({ host: 'localhost', ip: '127.0.0.1', port: h.smtpPort }, source, { mode: 'may', policy: 'may' }, fast);
    expect(s.capabilities).toEqual(expect.arrayContaining(['PIPELINING', 'SIZE', '8BITMIME', 'SMTPUTF8']));
    expect(s.capabilities).not.toContain('STARTTLS'); // the second EHLO, inside TLS
    expect(s.info.tls).toMatchObject({ version: expect.stringMatching(/^TLSv1\.[23]$/), verified: false });
    const tx = await s.send('a@b.test', ['x@c.test', 'y@c.test'], Buffer.from('Subject: over tls\r\n\r\nhello\r\n'));
    expect(tx.recipients.map((r) => r.outcome)).toEqual(['delivered', 'delivered']);
    s.close();
    expect(h.partition.size).toBe(1);
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS "required" against a server without STARTTLS is refused as tls-required', async () => {
  const mx = new ScriptedMx();
  const port = await mx.listen();
  try {
    await expect(SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'encrypt', policy: 'encrypt' }, fast)).rejects.toMatchObject({ kind: 'tls-required' });
  } finally {
    await mx.close();
  }
});

test('each wait has its phase timeout: an idle session never times out, a silent final dot does', async () => {
  // Answers everything at once, except that it never answers the final dot.
  const mute = await rawServer((s) => {
    s.write('220 mute.test ESMTP\r\n');
    let inData = false;
    s.on('data', (d: Buffer) => {
      for (const line of d.toString('latin1').split('\r\n').filter(Boolean)) {
        if (inData) continue; // the body and its dot: silence
        if (/^EHLO/i.test(line)) s.write('250-mute.test\r\n250 PIPELINING\r\n');
        else if (/^DATA/i.test(line)) {
          s.write('354 go on\r\n');
          inData = true;
        } else s.write('250 2.0.0 ok\r\n');
      }
    });
  });
  const timeouts = { ...fast, commandMs: 150, dataInitMs: 150, finalDotMs: 400 };
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mute.port }, source, { mode: 'may', policy: 'may' }, timeouts);
    // Idle for longer than the command timeout with nothing awaited: still usable.
    await new Promise((r) => setTimeout(r, 300));
    expect(s.usable).toBe(true);
    const t0 = Date.now();
    await expect(s.send('a@b.test', ['c@d.test'], Buffer.from('x\r\n'))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    // The final dot got its own 400 ms, not the 150 ms of the commands before it.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390);
    expect(s.usable).toBe(false);
  } finally {
    mute.server.close();
  }
});

/** Starts each send once the previous body is out, as the engine does on a pipelining session. */
async function sendPipelined(s: SmtpClientSession, count: number) {
  const results: Promise<Awaited<ReturnType<SmtpClientSession['send']>>>[] = [];
  for (let i = 0; i < count; i++) {
    let sent!: () => void;
    const out = new Promise<void>((r) => (sent = r));
    const tx = s.send('a@b.test', [`r${i}@c.test`], Buffer.from(`Subject: m${i}\r\n\r\nbody ${i}\r\n`), { onBodySent: sent });
    results.push(tx);
    await Promise.race([out, tx.then(() => undefined, () => undefined)]);
  }
  return Promise.allSettled(results);
}

test('across transactions (RFC 2920): the next envelope leaves with the previous body, in one segment', async () => {
  const mx = await pipeliningMx([]);
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, fast);
    expect(s.pipelined).toBe(true);
    const results = await sendPipelined(s, 3);
    expect(results.map((r) => r.status === 'fulfilled' && r.value.recipients[0].reply.code)).toEqual([250, 250, 250]);
    expect(mx.bodies).toEqual(['Subject: m0\n\nbody 0', 'Subject: m1\n\nbody 1', 'Subject: m2\n\nbody 2']);
    // The end of message 0 and the envelope of message 1 arrived in one read.
    expect(mx.chunks.some((c) => c.includes('body 0\r\n.\r\nMAIL FROM:<a@b.test>') && c.includes('RCPT TO:<r1@c.test>\r\nDATA\r\n'))).toBe(true);
    s.close();
  } finally {
    mx.server.close();
  }
});

test("the next send started inside onBodySent (as the proxy's transaction pipe does) waits behind the final reply already awaited: each gets its own", async () => {
  // The final-reply wait is registered before onBodySent is called: were it
  // registered after, the next envelope's MAIL wait would take this body's reply.
  const mx = await pipeliningMx(['550 5.7.1 content rejected', '250 2.0.0 ok']);
  let s: SmtpClientSession | undefined;
  try {
    s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, fast);
    const session = s;
    let second: ReturnType<SmtpClientSession['send']> | undefined;
    const first = session.send('a@b.test', ['r0@c.test'], Buffer.from('Subject: m0\r\n\r\nbody 0\r\n'), {
      onBodySent: () => (second = session.send('a@b.test', ['r1@c.test'], Buffer.from('Subject: m1\r\n\r\nbody 1\r\n'))),
    });
    // The first answer alone first: in the wrong order it is the next MAIL's 250, and the rest never comes.
    expect((await first).recipients[0].reply).toMatchObject({ code: 550, text: expect.stringContaining('content rejected') });
    expect((await second!).recipients[0].reply).toMatchObject({ code: 250, text: expect.stringContaining('ok') });
    expect(mx.bodies).toHaveLength(2);
  } finally {
    s?.close();
    mx.server.close();
  }
});

test('a refused body does not disturb the transaction pipelined behind it (no RSET in between)', async () => {
  const mx = await pipeliningMx(['550 5.7.1 content rejected', '250 2.0.0 ok']);
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, fast);
    const results = await sendPipelined(s, 2);
    expect(results.map((r) => r.status === 'fulfilled' && r.value.recipients[0].outcome)).toEqual(['failed', 'delivered']);
    expect(mx.chunks.join('')).not.toContain('RSET');
    expect(mx.bodies).toHaveLength(2);
    expect(s.usable).toBe(true);
    s.close();
  } finally {
    mx.server.close();
  }
});

test('a server that hangs up after a 421 fails the pipelined next transaction as not sent, not as delivered', async () => {
  const mx = await pipeliningMx(['close']);
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, fast);
    const [first, second] = await sendPipelined(s, 2);
    expect(first.status === 'fulfilled' && first.value.recipients[0].reply.code).toBe(421);
    expect(second.status).toBe('rejected'); // the engine records it deferred: "connection lost"
    expect(mx.bodies).toHaveLength(1);
    expect(s.usable).toBe(false);
  } finally {
    mx.server.close();
  }
});

test('a pipelined next envelope does not cut short the final-reply wait before it', async () => {
  // Final-dot timeout 1 s, command timeout 300 ms; the server answers the dot after 600 ms.
  const mx = await pipeliningMx([], { holdFinalMs: 600 });
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, { ...fast, commandMs: 300, finalDotMs: 1000 });
    const results = await sendPipelined(s, 2);
    expect(results.map((r) => r.status === 'fulfilled' && r.value.recipients[0].reply.code)).toEqual([250, 250]);
    s.close();
  } finally {
    mx.server.close();
  }
});

test('a 421 to the final dot ends the session at once, before the server has closed it', async () => {
  const mx = await pipeliningMx(['421 4.3.2 closing soon'], { pipelining: false });
  try {
    const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, fast);
    const tx = await s.send('a@b.test', ['r@c.test'], Buffer.from('x\r\n'));
    expect(tx.recipients[0].reply.code).toBe(421);
    expect(s.usable).toBe(false); // the engine takes no further job onto it
    s.close();
  } finally {
    mx.server.close();
  }
});

describe('TLS requirements (issue 19)', () => {
  const dir = tempDir('volley-client-tls-');
  let ca: TestCert;
  let good: TestCert;
  let wrongName: TestCert;
  let selfSigned: TestCert;
  let expired: TestCert;
  beforeAll(() => {
    ca = makeCa(dir);
    good = makeLeaf(dir, 'good', ['mx.test'], { ca });
    wrongName = makeLeaf(dir, 'wrong', ['elsewhere.test'], { ca });
    selfSigned = makeLeaf(dir, 'self', ['mx.test']);
    expired = makeLeaf(dir, 'expired', ['mx.test'], { ca, days: -1 });
  });
  const chain = (leaf: TestCert): { key: Buffer; cert: Buffer } => ({ key: leaf.key, cert: Buffer.concat([leaf.cert, ca.cert]) });
  const target = (port: number) => ({ host: 'mx.test', ip: '127.0.0.1', port });
  const short = { ...fast, tlsMs: 200 };
  const MAY: TlsRequirement = { mode: 'may', policy: 'may' };
  const ENCRYPT: TlsRequirement = { mode: 'encrypt', policy: 'encrypt' };
  const verify = (extra: Partial<TlsRequirement> = {}): TlsRequirement => ({ mode: 'verify', policy: 'mta-sts', names: ['mx.test'], ...extra });
  const dane = (tlsa: TlsaRecord[]): TlsRequirement => ({ mode: 'dane', policy: 'dane', names: ['mx.test'], tlsa });

  async function refusal(mx: StartTlsMx, tls: TlsRequirement, options: OpenOptions = {}): Promise<ConnectError> {
    const err = await SmtpClientSession.open(target(mx.port), source, tls, short, options).then(
      (s) => {
        s.close();
        throw new Error(`opened a session (tls ${JSON.stringify(s.info.tls)})`);
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    return err as ConnectError;
  }

  async function deliver(s: SmtpClientSession, mx: StartTlsMx): Promise<{ tls: boolean; body: string }> {
    const tx = await s.send('a@b.test', ['c@mx.test'], Buffer.from('Subject: t\r\n\r\nhello\r\n'));
    expect(tx.recipients[0].outcome).toBe('delivered');
    s.close();
    return mx.messages[mx.messages.length - 1];
  }

  test('STARTTLS answered 454 under a requirement to encrypt does not go on in clear: the session is refused as tls-required', async () => {
    const mx = await startTlsMx({ starttls: [454, '4.7.0 TLS not available'] });
    try {
      for (const tls of [ENCRYPT, verify(), dane([{ usage: 3, selector: 1, matchingType: 1, data: '00'.repeat(32) }])]) {
        const err = await refusal(mx, tls);
        expect([tls.mode, err.kind, err.tls]).toEqual([tls.mode, 'tls-required', { policy: tls.policy, verified: false, failure: 'starttls-not-supported' }]);
        // A 5xx there says nothing of the message: no reply on the error, so the engine defers.
        expect(err.reply).toBeUndefined();
      }
      expect(mx.messages).toHaveLength(0);
      await waitUntil(() => mx.connections.every((c) => c.closed));
    } finally {
      await mx.close();
    }
  });

  test('STARTTLS answered 454 under may goes on in clear on the same connection, and says so', async () => {
    const mx = await startTlsMx({ starttls: [454, '4.7.0 TLS not available'] });
    try {
      const s = await SmtpClientSession.open(target(mx.port), source, MAY, short);
      expect(s.info.tls).toEqual({ policy: 'may', verified: false, failure: 'starttls-not-supported' });
      expect(await deliver(s, mx)).toMatchObject({ tls: false });
      expect(mx.connections).toHaveLength(1);
    } finally {
      await mx.close();
    }
  });

  test('a handshake that never completes frees the connection within tlsMs', async () => {
    const mx = await startTlsMx({ starttls: 'silent' });
    try {
      const err = await refusal(mx, ENCRYPT);
      expect(err).toMatchObject({ kind: 'timeout', message: expect.stringContaining('no TLS handshake in 200 ms'), tls: { policy: 'encrypt', verified: false, failure: 'validation-failure' } });
      await waitUntil(() => mx.connections[0]?.closed === true);
      expect(mx.messages).toHaveLength(0);
    } finally {
      await mx.close();
    }
  });

  test('under may, a failed or stuck handshake is retried in clear on a new connection to the same MX (RFC 7435)', async () => {
    for (const starttls of ['garbage', 'silent'] as const) {
      const mx = await startTlsMx({ starttls });
      try {
        const s = await SmtpClientSession.open(target(mx.port), source, MAY, short);
        expect([starttls, s.info.tls]).toEqual([starttls, { policy: 'may', verified: false, failure: 'validation-failure' }]);
        expect(await deliver(s, mx)).toMatchObject({ tls: false });
        expect(mx.connections).toHaveLength(2);
        await waitUntil(() => mx.connections[0].closed);
      } finally {
        await mx.close();
      }
    }
  });

  test('under encrypt a failed handshake is not retried in clear', async () => {
    const mx = await startTlsMx({ starttls: 'garbage' });
    try {
      expect(await refusal(mx, ENCRYPT)).toMatchObject({ kind: 'tls-required', tls: { failure: 'validation-failure' } });
      expect(mx.connections).toHaveLength(1);
    } finally {
      await mx.close();
    }
  });

  test('on a socket made by someone else (HAProxy), the clear retry takes a new one from reconnect, and without it the session is refused', async () => {
    const mx = await startTlsMx({ starttls: 'garbage' });
    const dial = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = netConnect({ host: '127.0.0.1', port: mx.port }, () => resolve(s));
        s.once('error', reject);
      });
    try {
      let reconnects = 0;
      const s = await SmtpClientSession.openOn(await dial(), target(mx.port), source, MAY, short, { reconnect: () => (reconnects++, dial()) });
      expect(reconnects).toBe(1);
      expect(s.info.tls).toMatchObject({ failure: 'validation-failure' });
      expect(await deliver(s, mx)).toMatchObject({ tls: false });
      await expect(SmtpClientSession.openOn(await dial(), target(mx.port), source, MAY, short)).rejects.toMatchObject({ kind: 'tls-required', message: expect.stringContaining('retry in clear') });
    } finally {
      await mx.close();
    }
  });

  test('none never sends STARTTLS; may and encrypt encrypt without verifying', async () => {
    const mx = await startTlsMx(chain(selfSigned));
    try {
      const none = await SmtpClientSession.open(target(mx.port), source, { mode: 'none', policy: 'none' }, short);
      expect(none.info.tls).toEqual({ policy: 'none', verified: false });
      expect(await deliver(none, mx)).toMatchObject({ tls: false });
      for (const tls of [MAY, ENCRYPT]) {
        const s = await SmtpClientSession.open(target(mx.port), source, tls, short);
        expect(s.info.tls).toEqual({ policy: tls.policy, verified: false, version: expect.stringMatching(/^TLSv1\.[23]$/), cipher: expect.any(String) });
        expect(await deliver(s, mx)).toMatchObject({ tls: true });
      }
    } finally {
      await mx.close();
    }
  });

  test('verify: a chain to a trusted CA issued for the MX delivers inside TLS; otherwise the session is refused with the RFC 8460 reason', async () => {
    const cases: [TestCert, string | undefined][] = [
      [good, undefined],
      [wrongName, 'certificate-host-mismatch'],
      [selfSigned, 'certificate-not-trusted'],
      [expired, 'certificate-expired'],
    ];
    for (const [leaf, failure] of cases) {
      const mx = await startTlsMx(chain(leaf));
      try {
        if (!failure) {
          const s = await SmtpClientSession.open(target(mx.port), source, verify(), short, { ca: ca.cert });
          expect(s.info.tls).toMatchObject({ policy: 'mta-sts', verified: true });
          expect(s.info.tls?.failure).toBeUndefined();
          expect(await deliver(s, mx)).toMatchObject({ tls: true });
        } else {
          const err = await refusal(mx, verify(), { ca: ca.cert });
          expect([leaf.name, err.kind, err.tls]).toEqual([leaf.name, 'tls-required', { policy: 'mta-sts', verified: false, failure }]);
          expect(mx.messages).toHaveLength(0);
        }
      } finally {
        await mx.close();
      }
    }
  });

  test('verify without the CA configured trusts only the system store: a private CA is not trusted', async () => {
    const mx = await startTlsMx(chain(good));
    try {
      expect((await refusal(mx, verify())).tls).toMatchObject({ failure: 'certificate-not-trusted' });
    } finally {
      await mx.close();
    }
  });

  test('MTA-STS testing: a failed check is recorded and the session goes on', async () => {
    const mx = await startTlsMx(chain(wrongName));
    try {
      const s = await SmtpClientSession.open(target(mx.port), source, verify({ testing: true }), short, { ca: ca.cert });
      expect(s.info.tls).toMatchObject({ policy: 'mta-sts', verified: false, failure: 'certificate-host-mismatch' });
      expect(await deliver(s, mx)).toMatchObject({ tls: true });
    } finally {
      await mx.close();
    }
    const plain = await startTlsMx({ offer: false });
    try {
      const s = await SmtpClientSession.open(target(plain.port), source, verify({ testing: true }), short);
      expect(s.info.tls).toEqual({ policy: 'mta-sts', verified: false, failure: 'starttls-not-supported' });
      s.close();
    } finally {
      await plain.close();
    }
  });

  test('dane: a matching DANE-EE or DANE-TA record delivers; a mismatch is refused, never retried in clear', async () => {
    const mx = await startTlsMx(chain(good));
    const ee: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: tlsaData(good, 1, 1) };
    const ta: TlsaRecord = { usage: 2, selector: 0, matchingType: 2, data: tlsaData(ca, 0, 2) };
    const wrong: TlsaRecord = { usage: 3, selector: 0, matchingType: 1, data: tlsaData(selfSigned, 0, 1) };
    try {
      for (const rec of [ee, ta]) {
        const s = await SmtpClientSession.open(target(mx.port), source, dane([wrong, rec]), short);
        expect([rec.usage, s.info.tls]).toEqual([rec.usage, expect.objectContaining({ policy: 'dane', verified: true })]);
        expect(await deliver(s, mx)).toMatchObject({ tls: true });
      }
      const before = mx.connections.length;
      expect(await refusal(mx, dane([wrong]))).toMatchObject({ kind: 'tls-required', tls: { policy: 'dane', verified: false, failure: 'tlsa-invalid' } });
      expect(mx.connections.length - before).toBe(1);
      // DANE-TA checks the name too.
      const elsewhere = { ...dane([ta]), names: ['elsewhere.test'] };
      expect((await refusal(mx, elsewhere)).tls).toMatchObject({ failure: 'certificate-host-mismatch' });
      expect(mx.messages).toHaveLength(2);
    } finally {
      await mx.close();
    }
  });

  test('dane with only unusable records (PKIX usages) still requires TLS, unauthenticated, and says tlsa-invalid', async () => {
    const mx = await startTlsMx(chain(selfSigned));
    const plain = await startTlsMx({ offer: false });
    const pkixOnly = dane([{ usage: 1, selector: 1, matchingType: 1, data: tlsaData(selfSigned, 1, 1) }]);
    try {
      const s = await SmtpClientSession.open(target(mx.port), source, pkixOnly, short);
      expect(s.info.tls).toMatchObject({ policy: 'dane', verified: false, failure: 'tlsa-invalid' });
      expect(await deliver(s, mx)).toMatchObject({ tls: true });
      expect(await refusal(plain, pkixOnly)).toMatchObject({ kind: 'tls-required', tls: { failure: 'starttls-not-supported' } });
    } finally {
      await mx.close();
      await plain.close();
    }
  });
});

describe('a server without 8BITMIME or SMTPUTF8', () => {
  const eightBit = Buffer.from('Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, naïve café\r\n', 'utf8');

  test('8-bit mail arrives converted to 7 bit (RFC 6152: quoted-printable), the text unchanged', async () => {
    const mx = new ScriptedMx({ no8BitMime: true });
    const port = await mx.listen();
    try {
      const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);
      expect(s.capabilities).not.toContain('8BITMIME');
      const tx = await s.send('a@b.test', ['r@c.test'], eightBit);
      expect(tx.recipients[0]).toMatchObject({ outcome: 'delivered' });
      s.close();
      const raw = mx.messages[0].raw;
      expect(isAscii(raw)).toBe(true);
      expect(raw.toString()).toMatch(/Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, na=C3=AFve caf=C3=A9\r\n/);
      expect((await simpleParser(raw)).text).toBe((await simpleParser(eightBit)).text);
    } finally {
      await mx.close();
    }
  });

  test('8-bit mail that cannot be converted (raw 8-bit header) fails with 5.6.3 and is not sent; the session goes on', async () => {
    const mx = new ScriptedMx({ no8BitMime: true });
    const port = await mx.listen();
    try {
      const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);
      const tx = await s.send('a@b.test', ['r@c.test'], Buffer.from('Subject: Grüße\r\n\r\nx\r\n', 'utf8'));
      expect(tx.recipients[0]).toMatchObject({ outcome: 'failed', reply: { code: 554, enhanced: '5.6.3' } });
      expect(mx.attempts.size).toBe(0); // no RCPT: nothing of it went on the wire
      expect(s.usable).toBe(true);
      expect((await s.send('a@b.test', ['r@c.test'], Buffer.from('Subject: ok\r\n\r\nx\r\n'))).recipients[0].outcome).toBe('delivered');
      s.close();
      expect(mx.messages).toHaveLength(1);
    } finally {
      await mx.close();
    }
  });

  test('a non-ASCII address to a server without SMTPUTF8 fails with 5.6.7 (RFC 6531), nothing sent', async () => {
    const mx = new ScriptedMx({ noSmtpUtf8: true });
    const port = await mx.listen();
    try {
      const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);
      const tx = await s.send('a@b.test', ['jörg@c.test', 'r@c.test'], Buffer.from('Subject: x\r\n\r\nx\r\n'));
      expect(tx.recipients.map((r) => [r.rcpt, r.outcome, r.reply.enhanced])).toEqual([
        ['jörg@c.test', 'failed', '5.6.7'],
        ['r@c.test', 'failed', '5.6.7'],
      ]);
      expect(mx.attempts.size).toBe(0);
      expect(mx.messages).toHaveLength(0);
      expect(s.usable).toBe(true);
      s.close();
    } finally {
      await mx.close();
    }
  });
});

describe('every phase has its timeout: a server that falls silent at one command', () => {
  /** Answers in turn, without PIPELINING (each command awaited on its own), and says nothing from `silentAt` on. */
  const fallsSilent = (silentAt: string) =>
    rawServer((s) => {
      s.write('220 quiet.test ESMTP\r\n');
      let silent = false;
      s.on('data', (d: Buffer) => {
        for (const line of d.toString('latin1').split('\r\n').filter(Boolean)) {
          if (silent || line.toUpperCase().startsWith(silentAt)) {
            silent = true;
            continue;
          }
          if (/^EHLO/i.test(line)) s.write('250-quiet.test\r\n250 8BITMIME\r\n');
          else if (/^DATA/i.test(line)) s.write('354 go on\r\n');
          else s.write('250 2.0.0 ok\r\n');
        }
      });
      s.on('error', () => undefined);
    });
  const timeouts = { ...fast, greetingMs: 150, commandMs: 150, dataInitMs: 150, finalDotMs: 150 };

  test('EHLO: the open fails as a timeout (a ConnectError, as a silent greeting is)', async () => {
    const mx = await fallsSilent('EHLO');
    try {
      const err = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, timeouts).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).kind).toBe('timeout');
    } finally {
      mx.server.close();
    }
  });

  test.each(['MAIL', 'RCPT', 'DATA'])('%s: the transaction fails with ETIMEDOUT and the session is done', async (command) => {
    const mx = await fallsSilent(command);
    try {
      const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, timeouts);
      await expect(s.send('a@b.test', ['c@d.test'], Buffer.from('x\r\n'))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect(s.usable).toBe(false);
      s.close();
    } finally {
      mx.server.close();
    }
  });
});

describe('an MX whose replies do not match the commands: never "delivered" for a body it did not take', () => {
  /**
   * Answers each command line with `answer(line)` (a reply, or several; the
   * default 250, 354 to DATA), takes a body after a 354 it gave, and records
   * the bodies it finished, so a test can tell "delivered" from "received".
   */
  const lyingMx = (answer: (line: string, n: number) => string | undefined, options: { pipelining?: boolean } = {}) => {
    const bodies: string[] = [];
    const sockets: Socket[] = [];
    return rawServer((s) => {
      sockets.push(s);
      s.write('220 liar.test ESMTP\r\n');
      let rest = '';
      let inBody = false;
      let body: string[] = [];
      let n = 0;
      s.on('data', (d: Buffer) => {
        const lines = (rest + d.toString('latin1')).split('\r\n');
        rest = lines.pop()!;
        for (const line of lines) {
          if (inBody) {
            if (line === '.') {
              inBody = false;
              bodies.push(body.join('\n'));
              body = [];
              s.write(answer('.', n++) ?? '250 2.0.0 queued\r\n');
            } else body.push(line);
            continue;
          }
          if (/^EHLO/i.test(line)) {
            s.write(options.pipelining === false ? '250-liar.test\r\n250 8BITMIME\r\n' : '250-liar.test\r\n250 PIPELINING\r\n');
            continue;
          }
          const reply = answer(line, n++) ?? (/^DATA/i.test(line) ? '354 go on\r\n' : '250 2.0.0 ok\r\n');
          if (reply.startsWith('354')) inBody = true;
          s.write(reply);
        }
      });
      s.on('error', () => undefined);
    }).then((r) => ({ ...r, bodies, close: () => { for (const s of sockets) s.destroy(); r.server.close(); } }));
  };
  const open = (port: number) => SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port }, source, { mode: 'may', policy: 'may' }, fast);

  test.each([true, false])('DATA answered 250 instead of 354 (pipelining %s): deferred, not delivered, and the session is done', async (pipelining) => {
    const mx = await lyingMx((line) => (/^DATA/i.test(line) ? '250 2.0.0 ok, I guess\r\n' : undefined), { pipelining });
    try {
      const s = await open(mx.port);
      const tx = await s.send('a@b.test', ['r@c.test'], Buffer.from('Subject: x\r\n\r\nbody\r\n'));
      expect(mx.bodies).toEqual([]);
      expect(tx.recipients[0].outcome).toBe('deferred');
      expect(tx.recipients[0].reply.code).toBeGreaterThanOrEqual(400);
      expect(s.usable).toBe(false);
      s.close();
    } finally {
      mx.close();
    }
  });

  test.each([
    ['MAIL', '334 continue', false],
    ['MAIL', '334 continue', true],
    ['RCPT', '334 continue', false],
    ['RCPT', 'hello there', true],
  ])('%s answered "%s" (pipelining %s): deferred, not delivered, and the body never sent', async (command, reply, pipelining) => {
    const mx = await lyingMx((line) => (line.toUpperCase().startsWith(command) ? `${reply}\r\n` : undefined), { pipelining });
    try {
      const s = await open(mx.port);
      const tx = await s.send('a@b.test', ['r@c.test'], Buffer.from('Subject: x\r\n\r\nbody\r\n'));
      expect(tx.recipients[0].outcome).toBe('deferred');
      expect(s.usable).toBe(false);
      s.close();
      expect(mx.bodies).toEqual([]);
    } finally {
      mx.close();
    }
  });

  test.each([true, false])('RCPT answered 252 (a catch-all MX that cannot verify but takes the mail; pipelining %s): the recipients are delivered, the body sent once', async (pipelining) => {
    const mx = await lyingMx((line) => (/^RCPT TO:<b@/i.test(line) ? '252 2.1.5 cannot verify, will attempt delivery\r\n' : undefined), { pipelining });
    try {
      const s = await open(mx.port);
      const tx = await s.send('a@b.test', ['a@c.test', 'b@c.test'], Buffer.from('Subject: x\r\n\r\nbody\r\n'));
      expect(tx.recipients.map((r) => r.outcome)).toEqual(['delivered', 'delivered']);
      expect(mx.bodies).toHaveLength(1);
      expect(s.usable).toBe(true);
      s.close();
    } finally {
      mx.close();
    }
  });

  test('a reply nobody asked for (the final dot answered twice) ends the session: the next transaction is deferred, no recipient bounced on a reply not its own', async () => {
    let finals = 0;
    const mx = await lyingMx(
      (line) => {
        if (line === '.') return ++finals === 1 ? '250 2.0.0 queued\r\n250 2.0.0 queued, really\r\n' : undefined;
        if (/^RCPT TO:<no@/i.test(line)) return '550 5.1.1 no such user\r\n';
        return undefined;
      },
      { pipelining: false },
    );
    try {
      const s = await open(mx.port);
      const first = await s.send('a@b.test', ['r@c.test'], Buffer.from('Subject: 1\r\n\r\none\r\n'));
      expect(first.recipients[0].outcome).toBe('delivered');
      // Off by one from here: yes@ would get no@'s 550 and bounce, though the MX took it.
      const second = await s.send('a@b.test', ['yes@c.test', 'no@c.test'], Buffer.from('Subject: 2\r\n\r\ntwo\r\n'));
      expect(second.recipients.map((r) => r.outcome)).toEqual(['deferred', 'deferred']);
      expect(s.usable).toBe(false);
      s.close();
    } finally {
      mx.close();
    }
  });
});

describe('an MX that never ends its reply: a clear error, not a buffer without end', () => {
  /** Greets (or not), then answers the first command after the greeting with `flood` and stays open: nothing ends that reply. */
  const flooding = (where: 'greeting' | 'MAIL', flood: string) =>
    rawServer((s) => {
      s.on('error', () => undefined);
      const pour = (): void => {
        // 2 MB, far past any SMTP reply (RFC 5321 4.5.3.1.5: 512 octets a line).
        for (let i = 0; i < 32; i++) s.write(flood.repeat(Math.ceil(65_536 / flood.length)));
      };
      if (where === 'greeting') return pour();
      s.write('220 flood.test ESMTP\r\n');
      s.on('data', (d: Buffer) => {
        const text = d.toString('latin1');
        if (/^EHLO/im.test(text)) s.write('250-flood.test\r\n250 8BITMIME\r\n');
        if (/^MAIL/im.test(text)) pour();
      });
    });
  // The RFC's timeouts: only the bound on a reply's size can end these waits.
  const patient = RFC5321_CLIENT_TIMEOUTS;

  test('a greeting line that never ends fails the open as an error saying so', async () => {
    const mx = await flooding('greeting', 'x');
    try {
      const err = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, patient).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).kind).toBe('error');
      expect((err as Error).message).toMatch(/reply over \d+ bytes/);
    } finally {
      mx.server.close();
    }
  });

  test('a multi-line reply to MAIL that never ends fails the transaction, and the session is done', async () => {
    const mx = await flooding('MAIL', '250-more\r\n');
    try {
      const s = await SmtpClientSession.open({ host: 'mx.test', ip: '127.0.0.1', port: mx.port }, source, { mode: 'may', policy: 'may' }, patient);
      await expect(s.send('a@b.test', ['c@d.test'], Buffer.from('x\r\n'))).rejects.toThrow(/reply over \d+ bytes/);
      expect(s.usable).toBe(false);
      s.close();
    } finally {
      mx.server.close();
    }
  });
});
