import { createServer, type Server } from 'node:net';
import { smtpSourceWithAcks } from './smtp-source-acks';

/** Hangs up on every fifth connection before greeting, answers 451 to every seventh message, 250 otherwise. */
function flakyServer(): Promise<{ server: Server; port: number; accepted: string[] }> {
  const accepted: string[] = [];
  let conn = 0;
  let msg = 0;
  const server = createServer((s) => {
    s.on('error', () => undefined);
    if (++conn % 5 === 0) return void s.destroy();
    s.write('220 flaky.test ESMTP\r\n');
    let inData = false;
    let rcpt = '';
    let rest = '';
    s.on('data', (d: Buffer) => {
      const lines = (rest + d.toString('latin1')).split('\r\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        if (inData) {
          if (l !== '.') continue;
          inData = false;
          if (++msg % 7 === 0) s.write('451 4.3.0 try later\r\n');
          else {
            accepted.push(rcpt);
            s.write('250 2.0.0 ok\r\n');
          }
        } else if (/^RCPT TO:<([^>]+)>/i.test(l)) {
          rcpt = /<([^>]+)>/.exec(l)![1];
          s.write('250 ok\r\n');
        } else if (/^DATA/i.test(l)) {
          inData = true;
          s.write('354 go on\r\n');
        } else if (/^QUIT/i.test(l)) s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, accepted })));
}

test('smtp-source with acknowledgements: every 250 is listed by recipient, refusals and lost sessions are errors, dead runs restart', async () => {
  const mx = await flakyServer();
  try {
    const acks: number[] = [];
    const t = await smtpSourceWithAcks({ port: mx.port, sessions: 4, messages: 120, onAck: (n) => acks.push(n) });
    // What the server accepted is exactly what the client saw acknowledged, each message once.
    expect(new Set(t.acked).size).toBe(t.acked.length);
    expect([...t.acked].sort()).toEqual([...mx.accepted].sort());
    expect(acks[acks.length - 1]).toBe(t.acked.length);
    // Every message was either acknowledged or refused; hang-ups ended runs that were restarted.
    const refused = t.errors.filter((e) => /: 451 /.test(e));
    expect(t.acked.length + refused.length).toBe(120);
    // smtp-source stops at a refusal or a hang-up: each one ended a run, and a new run went on.
    expect(t.restarts).toBeLessThanOrEqual(t.errors.length);
    expect(t.restarts).toBeGreaterThanOrEqual(t.errors.length - 4); // a session's last run may end on one
    expect(t.errors.length - refused.length).toBeGreaterThan(0);
  } finally {
    mx.server.close();
  }
}, 60_000);
