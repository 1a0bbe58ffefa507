import { SMTPServer } from 'smtp-server';

export interface ReceivedMessage {
  from: string;
  to: string[];
  clientIp: string;
  helo: string;
  body: string;
  /** The body's bytes as received (body is their UTF-8 reading, lossy for other bytes). */
  raw: Buffer;
  at: number;
}

export interface ScriptedMxOptions {
  address?: string;
  /** Reply to each RCPT: return [code, text] to refuse, undefined to accept. */
  rcpt?: (rcpt: string, attempt: number) => [number, string] | undefined;
  /** Reply to the final dot: return [code, text] to refuse. */
  data?: (message: ReceivedMessage, attempt: number) => [number, string] | undefined;
  /** Hold each transaction this long before answering the final dot. */
  holdMs?: number;
  /** Or until this resolves (called at the final dot): a test decides when the reply goes. */
  holdUntil?: () => Promise<void>;
  /** Answer the greeting with this instead of 220 (e.g. 421 busy). */
  greeting?: [number, string];
  /** Leave 8BITMIME / SMTPUTF8 out of the EHLO answer (an old or strict receiver). */
  no8BitMime?: boolean;
  noSmtpUtf8?: boolean;
  /** Offer STARTTLS with this key and certificate (none offered without). */
  tls?: { key: string; cert: string };
}

/**
 * An MX on loopback whose answers a test chooses per recipient and per
 * attempt (greylisting, hard bounces, 4xx storms), and which records what it
 * saw: client IP, HELO, envelope, body, and how many sessions were open at once.
 */
export class ScriptedMx {
  readonly messages: ReceivedMessage[] = [];
  readonly attempts = new Map<string, number>();
  connections = 0;
  /** Sessions that completed STARTTLS. */
  secured = 0;
  open = 0;
  maxOpen = 0;
  private readonly server: SMTPServer;
  port = 0;

  constructor(private readonly options: ScriptedMxOptions = {}) {
    this.server = new SMTPServer({
      name: 'mx.test',
      authOptional: true,
      disabledCommands: options.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
      disableReverseLookup: true,
      hideENHANCEDSTATUSCODES: false,
      hide8BITMIME: options.no8BitMime === true,
      hideSMTPUTF8: options.noSmtpUtf8 === true,
      logger: false,
      onSecure: (_socket, _session, cb) => {
        this.secured++;
        cb();
      },
      onConnect: (_session, cb) => {
        this.connections++;
        this.open++;
        this.maxOpen = Math.max(this.maxOpen, this.open);
        if (options.greeting) return cb(Object.assign(new Error(options.greeting[1]), { responseCode: options.greeting[0] }));
        cb();
      },
      onClose: () => {
        this.open--;
      },
      onRcptTo: (address, _session, cb) => {
        const n = (this.attempts.get(address.address) ?? 0) + 1;
        this.attempts.set(address.address, n);
        const r = options.rcpt?.(address.address, n);
        if (r) return cb(Object.assign(new Error(r[1]), { responseCode: r[0] }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const m: ReceivedMessage = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            clientIp: session.remoteAddress.replace(/^::ffff:/, ''),
            helo: session.hostNameAppearsAs,
            raw: Buffer.concat(chunks),
            body: Buffer.concat(chunks).toString('utf8'),
            at: Date.now(),
          };
          const reject = options.data?.(m, m.to.map((t) => this.attempts.get(t) ?? 0).reduce((a, b) => Math.max(a, b), 0));
          const answer = (): void => {
            if (reject) return cb(Object.assign(new Error(reject[1]), { responseCode: reject[0] }));
            this.messages.push(m);
            cb(null, 'Ok: received');
          };
          if (options.holdUntil) void options.holdUntil().then(answer);
          else if (options.holdMs) setTimeout(answer, options.holdMs);
          else answer();
        });
      },
    });
    this.server.on('error', () => undefined);
  }

  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(port, this.options.address ?? '127.0.0.1', () => {
        const a = this.server.server.address();
        this.port = typeof a === 'object' && a ? a.port : port;
        resolve(this.port);
      });
    });
  }

  async waitFor(n: number, timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      if (Date.now() > until) throw new Error(`only ${this.messages.length} of ${n} messages arrived`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
