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
}

/**
 * A raw pipelining MX: it answers every complete command of a chunk in one
 * write, records the chunks as they arrived, and gives each message's final
 * reply from `finals` in turn ('close' hangs up after a 421). `holdFinalMs`
 * holds a write that carries a final reply; `pipelining: false` leaves
 * PIPELINING out of the EHLO answer.
 */
export function pipeliningMx(finals: string[], options: { holdFinalMs?: number; pipelining?: boolean } = {}): Promise<PipeliningMx> {
  const chunks: string[] = [];
  const bodies: string[] = [];
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    let rest = '';
    let body: string[] | undefined;
    s.write('220 mx.test ESMTP\r\n');
    s.on('data', (d: Buffer) => {
      chunks.push(d.toString('latin1'));
      const lines = (rest + d.toString('latin1')).split('\r\n');
      rest = lines.pop()!;
      let out = '';
      let held = false;
      for (const line of lines) {
        if (body) {
          if (line !== '.') {
            body.push(line);
            continue;
          }
          bodies.push(body.join('\n'));
          body = undefined;
          const f = finals.shift() ?? '250 2.0.0 ok';
          if (f === 'close') {
            s.end(out + '421 4.3.2 shutting down\r\n');
            return;
          }
          out += `${f}\r\n`;
          held = options.holdFinalMs !== undefined;
        } else if (/^EHLO/i.test(line)) out += options.pipelining === false ? '250-mx.test\r\n250 8BITMIME\r\n' : '250-mx.test\r\n250 PIPELINING\r\n';
        else if (/^DATA/i.test(line)) {
          out += '354 go ahead\r\n';
          body = [];
        } else if (/^QUIT/i.test(line)) {
          s.end(out + '221 bye\r\n');
          return;
        } else out += '250 2.1.0 ok\r\n';
      }
      if (out && held) setTimeout(() => s.write(out), options.holdFinalMs);
      else if (out) s.write(out);
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
  }));
}

