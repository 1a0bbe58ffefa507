// A raw MX on loopback whose STARTTLS a test scripts: a real handshake with
// the certificate chain it is given, a refusal (454, 554...), a 220 followed
// by silence (a handshake that never completes), or a 220 followed by bytes
// that are not TLS. It records each connection (whether it went encrypted,
// whether it is closed) and each message (and whether it arrived inside TLS).
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket } from 'node:tls';
import { listen } from '../../runtime/shared/listen';

export type StartTlsScript = 'tls' | 'silent' | 'garbage' | [number, string];

export interface StartTlsMxOptions {
  /** What STARTTLS gets (default a real handshake). */
  starttls?: StartTlsScript;
  /** False leaves STARTTLS out of the EHLO answer. */
  offer?: boolean;
  key?: Buffer;
  /** PEM, the leaf first, then any issuers to present. */
  cert?: Buffer;
}

export interface MxConnection {
  tls: boolean;
  closed: boolean;
}

export interface StartTlsMx {
  server: Server;
  port: number;
  connections: MxConnection[];
  messages: { tls: boolean; body: string }[];
  close(): Promise<void>;
}

export async function startTlsMx(options: StartTlsMxOptions = {}): Promise<StartTlsMx> {
  const connections: MxConnection[] = [];
  const messages: StartTlsMx['messages'] = [];
  const sockets = new Set<Socket>();
  const script = options.starttls ?? 'tls';
  const server = createServer((raw) => {
    sockets.add(raw);
    const conn: MxConnection = { tls: false, closed: false };
    connections.push(conn);
    raw.on('close', () => {
      conn.closed = true;
      sockets.delete(raw);
    });
    raw.on('error', () => undefined);
    const speak = (io: Socket | TLSSocket, encrypted: boolean): void => {
      let rest = '';
      let body: string[] | undefined;
      const onData = (d: Buffer): void => {
        const lines = (rest + d.toString('latin1')).split('\r\n');
        rest = lines.pop()!;
        for (const line of lines) {
          if (body) {
            if (line !== '.') body.push(line);
            else {
              messages.push({ tls: encrypted, body: body.join('\n') });
              body = undefined;
              io.write('250 2.0.0 ok\r\n');
            }
          } else if (/^EHLO/i.test(line)) io.write(!encrypted && options.offer !== false ? '250-mx.test\r\n250 STARTTLS\r\n' : '250 mx.test\r\n');
          else if (/^STARTTLS/i.test(line) && !encrypted) {
            io.removeListener('data', onData);
            if (Array.isArray(script)) {
              io.on('data', onData);
              io.write(`${script[0]} ${script[1]}\r\n`);
            } else {
              io.write('220 2.0.0 go ahead\r\n');
              if (script === 'garbage') io.write('this is not a TLS record\r\n'.repeat(20));
              else if (script === 'tls') {
                const secure = new TLSSocket(io as Socket, { isServer: true, secureContext: createSecureContext({ key: options.key, cert: options.cert }) });
                secure.on('error', () => raw.destroy());
                secure.once('secure', () => (conn.tls = true));
                speak(secure, true);
              }
              // 'silent': nothing more, ever; the client must give up.
            }
            return;
          } else if (/^DATA/i.test(line)) {
            body = [];
            io.write('354 go ahead\r\n');
          } else if (/^QUIT/i.test(line)) {
            io.end('221 bye\r\n');
            return;
          } else io.write('250 ok\r\n');
        }
      };
      io.on('data', onData);
    };
    raw.write('220 mx.test ESMTP\r\n');
    speak(raw, false);
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    server,
    port,
    connections,
    messages,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
