import { createServer, type Socket } from 'node:net';
import { listen } from '../../runtime/shared/listen';
import { HeldReplies } from './held-replies';

/**
 * A lean receiving SMTP server for the benchmarks that holds its reply to
 * each end of data for `holdMs`: a slow MX. smtp-sink's own holds are whole
 * seconds, and a relay in front of it costs as much CPU as a second sink on
 * the same two cores (it relays every byte and both hops make system calls),
 * which the held run then pays and the direct one does not. This answers
 * every command itself: PIPELINING, replies in order, and everything a
 * client pipelines behind a held body waits behind its reply. Holds on one
 * connection run one after another, as at a server that handles one
 * transaction at a time (a client that waits for each 354, as RFC 2920
 * asks, cannot send them any other way).
 *
 * A message counts once its 250 has been written (not when its final dot
 * arrives, as smtp-sink counts): a held transaction is over when the client
 * hears the reply.
 *
 * It never closes a connection it has accepted without a word. Beyond
 * `maxConnections` a connection waits, ungreeted, for one of the others to
 * close, as at smtp-sink -m (whose excess waits in the listen queue). Node's
 * own `server.maxConnections` closes the excess at once instead, and a
 * client sees that as a server that closed before its greeting: the bench's
 * MTA, which opens up to 1,000 connections to the sink and frees a slot as
 * soon as it sends QUIT, deferred such mail for an hour, and the bench
 * waited for it.
 */
export interface HeldSinkOptions {
  holdMs: number;
  host?: string;
  /** Connections served at once (default 1024, as the bench gives smtp-sink); more wait for a slot, ungreeted. */
  maxConnections?: number;
}

export interface HeldSink {
  port: number;
  messages(): number;
  /** Message bodies received so far, answered or still held. */
  bodies(): number;
  /** Connections accepted so far. */
  connections(): number;
  /** Connections accepted and waiting for a slot, not yet greeted. */
  waiting(): number;
  waitForMessages(n: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

const EHLO = '250-held-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n';
const END_OF_DATA = '\r\n.\r\n';

export async function startHeldSink(options: HeldSinkOptions): Promise<HeldSink> {
  const { holdMs } = options;
  if (!Number.isInteger(holdMs) || holdMs < 0) throw new Error(`holdMs must be a non-negative integer: ${holdMs}`);
  const limit = options.maxConnections ?? 1024;
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`maxConnections must be a positive integer: ${limit}`);
  let count = 0;
  let bodies = 0;
  let connections = 0;
  let serving = 0;
  // Each pending waitForMessages: called on every count, and with `stopped` when the sink stops.
  const waiters = new Set<(stopped?: boolean) => void>();
  const sockets = new Set<Socket>();
  // Accepted beyond the limit, in order of arrival: each is served when a served one closes.
  const queued: Socket[] = [];
  const server = createServer({ noDelay: true }, (socket) => accept(socket));

  function accept(socket: Socket): void {
    sockets.add(socket);
    connections++;
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      sockets.delete(socket);
      const i = queued.indexOf(socket);
      if (i >= 0) queued.splice(i, 1);
    });
    if (serving < limit) return serve(socket);
    socket.pause(); // nothing is read before the greeting, as at a server that has not accepted yet
    queued.push(socket);
  }

  function serve(socket: Socket): void {
    serving++;
    socket.setEncoding('latin1');
    socket.once('close', () => {
      replies.cancel();
      serving--;
      const next = queued.shift();
      if (next) serve(next);
    });
    let input = '';
    let inData = false;
    let quitting = false;
    const replies = new HeldReplies(socket, (n) => counted(n));
    let holdUntil = 0;
    const reply = (text: string, flags: { held?: boolean; quit?: boolean } = {}): void => {
      if (flags.held) holdUntil = Math.max(Date.now(), holdUntil) + holdMs;
      replies.push(holdUntil, text, { counts: flags.held, end: flags.quit });
    };

    const onCommand = (line: string): void => {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') reply(EHLO);
      else if (verb === 'HELO') reply('250 held-sink\r\n');
      else if (verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET' || verb === 'NOOP') reply('250 2.0.0 Ok\r\n');
      else if (verb === 'DATA') {
        reply('354 End data with <CR><LF>.<CR><LF>\r\n');
        inData = true;
      } else if (verb === 'QUIT') {
        reply('221 2.0.0 Bye\r\n', { quit: true });
        quitting = true;
      }
      else reply('502 5.5.2 Error: command not recognized\r\n');
    };

    socket.on('data', (chunk: string) => {
      if (quitting) return; // nothing after QUIT is read
      input += chunk;
      for (;;) {
        if (inData) {
          const end = input.indexOf(END_OF_DATA);
          if (end === -1) {
            // Keep only what could be the start of a terminator split across reads.
            if (input.length > END_OF_DATA.length) input = input.slice(-(END_OF_DATA.length - 1));
            break;
          }
          input = input.slice(end + END_OF_DATA.length);
          inData = false;
          bodies++;
          reply('250 2.0.0 Ok: queued\r\n', { held: true });
          continue;
        }
        const nl = quitting ? -1 : input.indexOf('\n');
        if (nl === -1) break;
        const line = input.slice(0, nl > 0 && input.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
        input = input.slice(nl + 1);
        onCommand(line);
        // DATA's own line end starts the body: a "." line right after it ends an empty one.
        if (inData) input = '\r\n' + input;
      }
      replies.release();
    });
    reply('220 held-sink ESMTP\r\n');
    replies.release();
    socket.resume();
  }

  function counted(n: number): void {
    count += n;
    for (const w of [...waiters]) w();
  }

  // A backlog as deep as smtp-sink's in the bench: connections open by the hundred when a run starts.
  const port = await listen(server, 0, options.host ?? '127.0.0.1', 1024);
  return {
    port,
    messages: () => count,
    bodies: () => bodies,
    connections: () => connections,
    waiting: () => queued.length,
    waitForMessages: (n, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const check = (stopped = false): void => {
          if (stopped) {
            // A wait abandoned by its caller (a bench run that failed) ends with the sink, timer and all.
            done();
            reject(new Error(`held sink stopped with ${count} of ${n} messages`));
            return;
          }
          if (count < n) return;
          done();
          resolve();
        };
        const timeout = setTimeout(() => {
          done();
          reject(new Error(`held sink: ${count} of ${n} messages in ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timeout);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const w of [...waiters]) w(true);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
