import { createServer, type Server } from 'node:net';
import { listen } from '../../runtime/shared/listen';

export interface PipeliningMx {
  server: Server;
  port: number;
  /** Every read, as it arrived: what the client wrote together shows up together. */
  chunks: string[];
  /** The messages, lines joined by \n. */
  bodies: string[];
  readonly connections: number;
  /**
   * MAIL commands that arrived while the final reply to an earlier body on
   * their connection was still unwritten: envelopes pipelined behind a body
   * (RFC 2920), each a round trip saved.
   */
  readonly mailsBeforeFinal: number;
}

export interface PipeliningMxOptions {
  holdFinalMs?: number;
  pipelining?: boolean;
  /** The reply line to a RCPT (e.g. "550 5.1.1 no such user"); undefined: 250. */
  rcpt?: (address: string) => string | undefined;
  /** The final reply to a body, before `finals` is consulted; undefined: the next of `finals`. */
  final?: (body: string) => string | undefined;
}

/**
 * A raw pipelining MX: it answers every complete command of a chunk in one
 * write, records the chunks as they arrived, and gives each message's final
 * reply from `finals` in turn ('close' hangs up after a 421). `holdFinalMs`
 * holds a write that carries a final reply; `pipelining: false` leaves
 * PIPELINING out of the EHLO answer. `rcpt` and `final` choose replies by
 * recipient and by body; DATA after no accepted recipient gets 554, as at a
 * real server.
 */
export function pipeliningMx(finals: string[], options: PipeliningMxOptions = {}): Promise<PipeliningMx> {
  const chunks: string[] = [];
  const bodies: string[] = [];
  let connections = 0;
  let mailsBeforeFinal = 0;
  const server = createServer((s) => {
    connections++;
    let rest = '';
    let body: string[] | undefined;
    let accepted = 0;
    // Final replies decided and not yet written (held, or in this read's answer).
    let finalsUnsent = 0;
    let replies = Promise.resolve();
    s.write('220 mx.test ESMTP\r\n');
    s.on('data', (d: Buffer) => {
      chunks.push(d.toString('latin1'));
      const lines = (rest + d.toString('latin1')).split('\r\n');
      rest = lines.pop()!;
      let out = '';
      let held = false;
      let finalsInOut = 0;
      for (const line of lines) {
        if (body) {
          if (line !== '.') {
            body.push(line);
            continue;
          }
          bodies.push(body.join('\n'));
          body = undefined;
          const f = options.final?.(bodies[bodies.length - 1]) ?? finals.shift() ?? '250 2.0.0 ok';
          if (f === 'close') {
            s.end(out + '421 4.3.2 shutting down\r\n');
            return;
          }
          out += `${f}\r\n`;
          finalsInOut++;
          finalsUnsent++;
          held = options.holdFinalMs !== undefined;
        } else if (/^EHLO/i.test(line)) out += options.pipelining === false ? '250-mx.test\r\n250 8BITMIME\r\n' : '250-mx.test\r\n250 PIPELINING\r\n';
        else if (/^DATA/i.test(line)) {
          if (accepted === 0) out += '554 5.5.1 no valid recipients\r\n';
          else {
            out += '354 go ahead\r\n';
            body = [];
          }
          accepted = 0;
        } else if (/^QUIT/i.test(line)) {
          s.end(out + '221 bye\r\n');
          return;
        } else if (/^RCPT TO:/i.test(line)) {
          const r = options.rcpt?.(/<([^>]*)>/.exec(line)?.[1] ?? '');
          if (r === undefined) accepted++;
          out += `${r ?? '250 2.1.5 ok'}\r\n`;
        } else {
          if (/^MAIL FROM:/i.test(line) && finalsUnsent > 0) mailsBeforeFinal++;
          if (/^(MAIL|RSET)/i.test(line)) accepted = 0;
          out += '250 2.1.0 ok\r\n';
        }
      }
      if (!out) return;
      const written = finalsInOut;
      const at = held ? Date.now() + options.holdFinalMs! : 0;
      // Replies leave in order: a read's answer waits behind a held one before it.
      replies = replies.then(async () => {
        const wait = at - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        finalsUnsent -= written;
        if (!s.destroyed) s.write(out);
      });
    });
    s.on('error', () => undefined);
  });
  return listen(server, 0, '127.0.0.1').then((port) => ({
    server,
    port,
    chunks,
    bodies,
    get connections() {
      return connections;
    },
    get mailsBeforeFinal() {
      return mailsBeforeFinal;
    },
  }));
}

