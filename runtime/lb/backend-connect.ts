// Opening one connection to a backend, used by client sessions and by health
// checks alike: connect (bounded), send the PROXY header, and in SMTP mode
// read the whole greeting (bounded) and accept only a 220.
import { connect, isIPv4, type Socket } from 'node:net';
import type { HostPort, ListenerMode } from './options';

export type BackendFailure = 'refused' | 'connect_timeout' | 'greeting_timeout' | 'bad_greeting' | 'closed' | 'error' | 'aborted';

export type ConnectResult =
  | { ok: true; socket: Socket; greeting: Buffer }
  | { ok: false; reason: BackendFailure; detail: string; refusal?: string };

export interface ConnectOptions {
  backend: HostPort;
  mode: ListenerMode;
  connectTimeoutMs: number;
  greetingTimeoutMs: number;
  /** The local address to connect from (LbOptions.sourceAddress). */
  localAddress?: string;
  /** The header to send first ("PROXY TCP4 …\r\n"), if any. */
  proxyHeader?: string;
  /** Aborting gives up the attempt (the client went away) and destroys the socket. */
  signal?: AbortSignal;
}

/** A greeting longer than this is not an SMTP greeting. */
const MAX_GREETING = 4096;

export function connectBackend(o: ConnectOptions): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const socket = connect({ host: o.backend.host, port: o.backend.port, localAddress: o.localAddress, allowHalfOpen: true });
    let settled = false;
    let greeting = Buffer.alloc(0);
    let timer = setTimeout(() => fail('connect_timeout', `no connection in ${o.connectTimeoutMs} ms`), o.connectTimeoutMs);

    const onAbort = (): void => fail('aborted', 'the client went away');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) return fail('aborted', 'the client went away');

    function cleanup(): void {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.removeListener('end', onClose);
      socket.removeListener('connect', onConnect);
      socket.removeListener('error', onError);
    }
    function fail(reason: BackendFailure, detail: string, refusal?: string): void {
      if (settled) return;
      settled = true;
      cleanup();
      socket.on('error', () => undefined);
      socket.destroy();
      resolve({ ok: false, reason, detail, ...(refusal ? { refusal } : {}) });
    }
    function succeed(): void {
      if (settled) return;
      settled = true;
      cleanup();
      socket.pause();
      resolve({ ok: true, socket, greeting });
    }
    function onError(err: NodeJS.ErrnoException): void {
      fail(err.code === 'ECONNREFUSED' ? 'refused' : 'error', err.message);
    }
    function onClose(): void {
      fail('closed', greeting.length ? `closed after ${JSON.stringify(greeting.toString('latin1').slice(0, 100))}` : 'closed before greeting');
    }
    function onConnect(): void {
      if (o.proxyHeader) socket.write(o.proxyHeader);
      if (o.mode === 'tcp') return succeed();
      clearTimeout(timer);
      timer = setTimeout(() => fail('greeting_timeout', `no greeting in ${o.greetingTimeoutMs} ms`), o.greetingTimeoutMs);
    }
    function onData(chunk: Buffer): void {
      greeting = Buffer.concat([greeting, chunk]);
      const text = greeting.toString('latin1');
      // The greeting ends with its last line, "ddd SP text CRLF" (or a bare "ddd CRLF").
      const last = /(?:^|\n)(\d{3})(?: [^\n]*)?\n/.exec(text.replace(/\r\n/g, '\n'));
      if (last) {
        if (last[1] === '220') return succeed();
        // A whole reply refusing the session (e.g. the MTA's per-client limit), kept to pass on.
        return fail('bad_greeting', text.trim().slice(0, 200), text);
      }
      if (!/^\d{3}[- \r]/.test(text) && text.length >= 4) return fail('bad_greeting', text.trim().slice(0, 200));
      if (greeting.length > MAX_GREETING) fail('bad_greeting', 'greeting too long');
    }
    socket.on('connect', onConnect);
    socket.on('error', onError);
    // allowHalfOpen: a FIN alone does not close the socket, so 'end' counts too.
    socket.on('close', onClose);
    socket.on('end', onClose);
    socket.on('data', onData);
  });
}

/** PROXY protocol v1 header for a client connection seen on `front`. */
export function proxyV1Header(client: Socket): string {
  const src = plain(client.remoteAddress);
  const dst = plain(client.localAddress);
  if (!src || !dst || client.remotePort === undefined || client.localPort === undefined) return 'PROXY UNKNOWN\r\n';
  const v4 = isIPv4(src) && isIPv4(dst);
  const s = v4 ? src : mapped(src);
  const d = v4 ? dst : mapped(dst);
  return `PROXY ${v4 ? 'TCP4' : 'TCP6'} ${s} ${d} ${client.remotePort} ${client.localPort}\r\n`;
}

function plain(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function mapped(address: string): string {
  return isIPv4(address) ? `::ffff:${address}` : address;
}
