import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { listen } from '../shared/listen';

export interface SinkOptions {
  port: number;
  address?: string;
  /** Write each received message to `<dir>/<n>.eml` so a user can look at it. */
  dir?: string;
  /** Hold each transaction this long before answering the final dot (tests of slow MXes). */
  holdMs?: number;
}

export interface SinkCounts {
  connections: number;
  messages: number;
  recipients: number;
  bytes: number;
}

/**
 * The embedded sink MX of the local fleet: accepts every message for every
 * recipient, counts it, and optionally keeps a copy. It stands in for the
 * Internet's MX servers when `npm start` runs with static routes.
 */
export class SinkServer {
  readonly counts: SinkCounts = { connections: 0, messages: 0, recipients: 0, bytes: 0 };
  private readonly server: SMTPServer;
  private port = 0;

  constructor(private readonly options: SinkOptions) {
    if (options.dir) mkdirSync(options.dir, { recursive: true });
    this.server = new SMTPServer({
      name: 'sink.volley.test',
      banner: 'Volley sink MX',
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      disableReverseLookup: true,
      logger: false,
      onConnect: (_session, cb) => {
        this.counts.connections++;
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const body = Buffer.concat(chunks);
          this.counts.messages++;
          this.counts.recipients += session.envelope.rcptTo.length;
          this.counts.bytes += body.length;
          if (this.options.dir) writeFileSync(join(this.options.dir, `${String(this.counts.messages).padStart(8, '0')}.eml`), body);
          const reply = (): void => cb(null, `Ok: sunk as ${this.counts.messages}`);
          if (this.options.holdMs) setTimeout(reply, this.options.holdMs);
          else reply();
        });
      },
    });
  }

  async listen(): Promise<number> {
    // smtp-server re-emits socket errors on itself; listen() reports the bind error.
    this.server.on('error', () => undefined);
    this.port = await listen(this.server.server, this.options.port, this.options.address ?? '127.0.0.1');
    return this.port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
