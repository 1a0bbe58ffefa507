// The embedded sink MX: accepts every message and, with a folder, keeps a copy
// of each as a numbered .eml file that a later run never overwrites.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { listen } from '../shared/listen';

export interface SinkOptions {
  port: number;
  address?: string;
  /** Write each received message to `<dir>/<n>.eml` so a user can look at it (numbering goes on from the highest file already there). */
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
  /** The number of the last file written (or found at start). */
  private lastFile = 0;

  constructor(private readonly options: SinkOptions) {
    if (options.dir) {
      mkdirSync(options.dir, { recursive: true });
      // A restart goes on after the previous run's mail instead of writing over it.
      for (const f of readdirSync(options.dir)) {
        const m = /^(\d+)\.eml$/.exec(f);
        if (m) this.lastFile = Math.max(this.lastFile, Number(m[1]));
      }
    }
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
          if (this.options.dir) {
            try {
              this.keep(body);
            } catch (err) {
              // Not kept: the sender keeps the message and tries again.
              return cb(Object.assign(new Error(`sink: cannot keep the message: ${(err as Error).message}`), { responseCode: 451 }));
            }
          }
          this.counts.messages++;
          this.counts.recipients += session.envelope.rcptTo.length;
          this.counts.bytes += body.length;
          const reply = (): void => cb(null, `Ok: sunk as ${this.counts.messages}`);
          if (this.options.holdMs) setTimeout(reply, this.options.holdMs);
          else reply();
        });
      },
    });
  }

  /** Writes the next numbered file; 'wx' never replaces one (another writer got there first: take the next number). */
  private keep(body: Buffer): void {
    for (;;) {
      const name = join(this.options.dir!, `${String(++this.lastFile).padStart(8, '0')}.eml`);
      try {
        writeFileSync(name, body, { flag: 'wx' });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
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
