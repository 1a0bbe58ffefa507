// Small SMTP-ish backends for the lb tests, each a net server on loopback:
// a minimal MTA that greets and takes a transaction, or one that never greets,
// greets with 554, or closes at once.
import { createServer, type Server, type Socket } from 'node:net';

export type Behaviour = 'smtp' | 'silent' | 'reject554' | 'close';

export interface FakeMta {
  name: string;
  port: number;
  /** Connections accepted, and open now. */
  accepted: number;
  open: number;
  /** The first line of each connection when it is a PROXY header. */
  proxyHeaders: string[];
  /** The address each connection came from, in order. */
  peers: string[];
  /** Messages taken (the 250 after DATA). */
  messages: number;
  /** Stops listening and closes the open connections (the port then refuses). */
  close(): Promise<void>;
  /** Listens again on the same port. */
  reopen(): Promise<void>;
}

export interface FakeMtaOptions {
  behaviour?: Behaviour;
  /** Delay before the greeting. */
  greetDelayMs?: number;
  /** Expect a PROXY header line first. */
  proxy?: boolean;
  port?: number;
}

export async function startFakeMta(name: string, o: FakeMtaOptions = {}): Promise<FakeMta> {
  const behaviour = o.behaviour ?? 'smtp';
  const sockets = new Set<Socket>();
  let server: Server;
  const mta: FakeMta = {
    name,
    port: o.port ?? 0,
    accepted: 0,
    open: 0,
    proxyHeaders: [],
    peers: [],
    messages: 0,
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      });
    },
    async reopen() {
      await listen();
    },
  };

  function handle(s: Socket): void {
    mta.accepted++;
    mta.open++;
    mta.peers.push(s.remoteAddress ?? '');
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      mta.open--;
      sockets.delete(s);
    });
    if (behaviour === 'close') return void s.destroy();
    if (behaviour === 'silent') return;
    let buf = '';
    let inData = false;
    let greeted = false;
    let proxyDone = !o.proxy;
    const greet = (): void => {
      if (greeted) return;
      greeted = true;
      setTimeout(() => {
        if (s.destroyed) return;
        s.write(behaviour === 'reject554' ? `554 5.3.2 ${name} not taking mail\r\n` : `220 ${name} ESMTP ready\r\n`);
        if (behaviour === 'reject554') s.end();
      }, o.greetDelayMs ?? 0);
    };
    if (proxyDone) greet();
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end === -1) return;
          buf = buf.slice(end + 5);
          inData = false;
          mta.messages++;
          s.write(`250 2.0.0 queued by ${name}\r\n`);
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl === -1) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (!proxyDone) {
          proxyDone = true;
          if (line.startsWith('PROXY ')) mta.proxyHeaders.push(line);
          greet();
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') s.write(`250-${name}\r\n250-PIPELINING\r\n250 8BITMIME\r\n`);
        else if (verb === 'HELO' || verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP') s.write('250 2.0.0 ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          s.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') {
          s.end(`221 2.0.0 ${name} bye\r\n`);
          return;
        } else s.write('500 5.5.2 what\r\n');
      }
    });
  }

  async function listen(): Promise<void> {
    server = createServer(handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(mta.port, '127.0.0.1', () => {
        const a = server.address();
        mta.port = typeof a === 'object' && a ? a.port : mta.port;
        resolve();
      });
    });
  }
  await listen();
  return mta;
}

/** A port nothing listens on (connections are refused). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
