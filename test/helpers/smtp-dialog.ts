import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  text: string;
}

/**
 * A raw SMTP client for tests that must control every byte (bare LF, NUL,
 * over-long lines, vanishing mid-DATA), which a real client would refuse to send.
 */
export class SmtpDialog {
  private buffer = '';
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.attach();
  }

  static open(port: number, host = '127.0.0.1', localAddress?: string): Promise<SmtpDialog> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, localAddress }, () => resolve(new SmtpDialog(s)));
      s.once('error', reject);
    });
  }

  private attach(): void {
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buffer += d;
      this.waiters.splice(0).forEach((w) => w());
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    this.socket.on('error', () => undefined);
  }

  async reply(timeoutMs = 10_000): Promise<Reply> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buffer);
      if (m) {
        const end = m.index + m[0].length;
        const lines = this.buffer.slice(0, end).split('\r\n').filter(Boolean);
        this.buffer = this.buffer.slice(end);
        return { code: Number(m[1]), lines, text: lines.map((l) => l.slice(4)).join('\n') };
      }
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`);
      if (Date.now() > until) throw new Error(`no reply; buffer: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, until - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.send(`${line}\r\n`);
    return this.reply();
  }

  async starttls(servername = 'localhost'): Promise<void> {
    const r = await this.command('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.text}`);
    this.socket.removeAllListeners('data');
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const t = tlsConnect({ socket: this.socket, servername, rejectUnauthorized: false }, () => resolve(t));
      t.once('error', reject);
    });
    this.socket = secure;
    this.buffer = '';
    this.attach();
  }

  /** A whole transaction; returns the reply to the final dot (or the first refusal). */
  async transaction(from: string, to: string[], body: string | Buffer): Promise<Reply> {
    const m = await this.command(`MAIL FROM:<${from}>`);
    if (m.code !== 250) return m;
    let accepted = 0;
    let last = m;
    for (const r of to) {
      last = await this.command(`RCPT TO:<${r}>`);
      if (last.code === 250) accepted++;
    }
    if (accepted === 0) return last;
    const d = await this.command('DATA');
    if (d.code !== 354) return d;
    this.send(body);
    this.send('\r\n.\r\n');
    return this.reply();
  }

  destroy(): void {
    this.socket.destroy();
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      this.send('QUIT\r\n');
      await new Promise((r) => setTimeout(r, 5));
    }
    this.socket.destroy();
  }
}

export function message(subject = 'test', body = 'hello', extraHeaders = ''): string {
  return `From: a@example.test\r\nTo: b@example.test\r\nSubject: ${subject}\r\n${extraHeaders}\r\n${body}`;
}

/** Injects one message over a fresh session; returns its queue id or throws with the refusal. */
export async function inject(port: number, from: string, to: string[], body: string = message('test')): Promise<string> {
  const s = await SmtpDialog.open(port);
  await s.reply();
  await s.command('EHLO injector.test');
  const r = await s.transaction(from, to, body);
  await s.quit();
  if (r.code !== 250) throw new Error(`injection refused: ${r.code} ${r.text}`);
  return /queued as (\S+)/.exec(r.text)![1];
}
