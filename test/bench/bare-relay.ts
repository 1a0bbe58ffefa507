// The floor under the proxy's CPU per message: a bare relay in Node doing
// what a proxy worker must do for each message and nothing else. It takes a
// length-prefixed message over TLS, sends its envelope to an SMTP server
// (MAIL, RCPT and DATA in one write), its body after the 354, and answers a
// ~200-byte frame over TLS after the final 250: the same 3 reads and 3
// writes a message as `volley proxy`, without its protocol, pool, pipe or
// checks. Run as a child: `bare-relay.ts <tls key> <tls cert> <smtp port>`;
// prints its port.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';

const [keyPath, certPath, smtpPort] = process.argv.slice(2);
const answer = Buffer.alloc(200, 0x61);
answer.writeUInt32BE(196, 0);

const server = createServer({ key: readFileSync(keyPath), cert: readFileSync(certPath) }, (link) => {
  link.on('error', () => undefined);
  const mx = connect(Number(smtpPort), '127.0.0.1');
  mx.setNoDelay(true);
  mx.setEncoding('latin1');
  mx.on('error', () => undefined);
  // Replies awaited before the next step: the greeting, EHLO's, then per message 250 250 354, and the final 250.
  let pending = 1;
  let replies = '';
  let body: Buffer | undefined;
  let stage: 'greeting' | 'ehlo' | 'ready' | 'envelope' | 'final' = 'greeting';
  const send = (): void => {
    stage = 'envelope';
    pending = 3;
    mx.write('MAIL FROM:<bench@volley.test>\r\nRCPT TO:<rcpt@sink.test>\r\nDATA\r\n');
  };
  mx.on('data', (d: string) => {
    replies += d;
    let nl: number;
    while ((nl = replies.indexOf('\n')) !== -1) {
      const line = replies.slice(0, nl);
      replies = replies.slice(nl + 1);
      if (line.charCodeAt(3) === 45) continue;
      if (--pending > 0) continue;
      pending = 1;
      if (stage === 'greeting') {
        stage = 'ehlo';
        mx.write('EHLO bare.test\r\n');
      } else if (stage === 'ehlo') {
        stage = 'ready';
        if (body) send();
      } else if (stage === 'envelope') {
        stage = 'final';
        mx.write(body!);
      } else if (stage === 'final') {
        stage = 'ready';
        body = undefined;
        link.write(answer);
      }
    }
  });
  let inbound: Buffer = Buffer.alloc(0);
  link.on('data', (chunk: Buffer) => {
    inbound = inbound.length === 0 ? chunk : Buffer.concat([inbound, chunk]);
    if (inbound.length < 4 || inbound.length < 4 + inbound.readUInt32BE(0)) return;
    const message = inbound.subarray(4, 4 + inbound.readUInt32BE(0));
    inbound = inbound.subarray(4 + message.length);
    body = Buffer.concat([message, Buffer.from('.\r\n')]);
    if (stage === 'ready') send();
  });
  link.on('close', () => mx.destroy());
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
