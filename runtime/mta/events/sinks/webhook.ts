// The webhook sink: POSTs a batch of events as one JSON array to an HTTPS
// receiver, signed the Standard Webhooks way, and retries it until the receiver
// acknowledges it (2xx), refuses it (a 4xx other than 408/429), or it is older
// than max_age. A batch it gives up on goes to a dead-letter file under the
// persistent path, durably and with a log line: nothing is dropped silently.

import { mkdir, open } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { dirname, join } from 'node:path';
import { createSecureContext, getCACertificates, type SecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { VolleyError, errorCode } from '../../../shared/errors';
import type { WebhookSinkConfig } from '../../../shared/config/events';
import type { EventSink, SinkBatch, SinkDeps, SinkStats } from '../types';
import { batchId, readSecretFiles, signHeaders } from './webhook-signature';

const gzip = promisify(gzipCb);

/** Full-jitter exponential backoff: a retry waits random() * min(cap, base * 2^n). */
export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_CAP_MS = 5 * 60_000;
/** A Retry-After beyond this is a receiver's mistake, not a plan: waiting a day would stall the sink's cursor for a day. */
export const RETRY_AFTER_CAP_MS = 60 * 60_000;
/** Enough of an error response to say what went wrong in a log line. */
const ERROR_BODY_BYTES = 512;
/** Headers the sink owns: a configured header must not change what is signed or how the body is read. */
const RESERVED_HEADERS = new Set(['webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'content-encoding', 'content-length', 'transfer-encoding', 'host', 'connection']);

export interface WebhookSinkOptions {
  /** Waits between attempts; injected so tests drive backoff without a wall clock (default: setTimeout). */
  sleep?: (ms: number) => Promise<void>;
  /** The jitter's source, in [0, 1) (default Math.random). */
  random?: () => number;
}

/** What one attempt came to. */
type Outcome =
  | { kind: 'ok'; status: number }
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  | { kind: 'reject'; status: number; error: string };

export function createWebhookSink(config: WebhookSinkConfig, deps: SinkDeps, options: WebhookSinkOptions = {}): EventSink {
  return new WebhookSink(config, deps, options);
}

/** Milliseconds a Retry-After header asks for: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v) * 1000, RETRY_AFTER_CAP_MS);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(at - nowMs, 0), RETRY_AFTER_CAP_MS);
}

/** Which statuses are worth another try: the receiver is busy or broken, not saying no. */
function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

class WebhookSink implements EventSink {
  readonly name: string;
  readonly batchSize: number;
  readonly maxWaitMs: number;
  readonly concurrency: number;

  private readonly url: URL;
  /** Replaced whole by setSigningKeys on a config refresh; read once per request. */
  private keys: readonly Buffer[];
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;
  private readonly headers: Record<string, string>;
  private readonly deadLetterPath: string;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly counters: SinkStats = { delivered: 0, deliveredEvents: 0, retries: 0, deadLettered: 0 };
  private closed = false;
  private readonly closedSignal: Promise<void>;
  private signalClosed!: () => void;
  private readonly requests = new Set<http.ClientRequest>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly running = new Set<Promise<unknown>>();
  /** Dead-letter appends one after another, so two batches' lines never interleave. */
  private deadLetterChain: Promise<void> = Promise.resolve();

  setSigningKeys(keys: readonly Buffer[]): void {
    this.keys = keys;
  }

  constructor(
    private readonly config: WebhookSinkConfig,
    private readonly deps: SinkDeps,
    private readonly options: WebhookSinkOptions,
  ) {
    this.name = config.name;
    this.batchSize = config.batchSize;
    this.maxWaitMs = config.maxWaitMs;
    this.concurrency = config.concurrency;
    this.now = deps.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.closedSignal = new Promise((resolve) => (this.signalClosed = resolve));

    try {
      this.url = new URL(config.url);
    } catch {
      throw new VolleyError('EWEBHOOKCONFIG', `webhook sink "${config.name}": "${config.url}" is not a URL`);
    }
    if (this.url.protocol !== 'https:' && this.url.protocol !== 'http:') {
      throw new VolleyError('EWEBHOOKCONFIG', `webhook sink "${config.name}": ${this.url.protocol} is not http(s)`);
    }
    this.keys = readSecretFiles(config.secretFiles);
    this.headers = {};
    for (const [k, v] of Object.entries(config.headers)) {
      const lower = k.toLowerCase();
      if (RESERVED_HEADERS.has(lower)) throw new VolleyError('EWEBHOOKCONFIG', `webhook sink "${config.name}": header "${k}" is set by the sink itself`);
      this.headers[lower] = v;
    }
    if (this.url.protocol === 'https:') {
      // ca_file adds to the trusted CAs instead of replacing them (Node's `ca`
      // alone would replace): a receiver behind a public CA keeps working.
      // Built once, as a secure context, not handed to the agent as `ca`: the
      // agent keys its socket pool by a string that embeds `ca` (every system
      // CA, ~200 KB) and rebuilds it for every request, and a TLS connection
      // given `ca` builds its own context; at a few thousand events a second
      // that was the primary's biggest cost after SQLite (bench, README).
      let secureContext: SecureContext | undefined;
      if (config.caFile) {
        let pem: string;
        try {
          pem = readFileSync(config.caFile, 'utf8');
        } catch (err) {
          throw new VolleyError('EWEBHOOKCA', `webhook sink "${config.name}": cannot read ca_file ${config.caFile}: ${(err as Error).message}`, { cause: err });
        }
        if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new VolleyError('EWEBHOOKCA', `webhook sink "${config.name}": ca_file ${config.caFile} holds no PEM certificate`);
        secureContext = createSecureContext({ ca: [...getCACertificates('default'), pem] });
      }
      this.agent = new https.Agent({ keepAlive: true, maxSockets: config.concurrency, rejectUnauthorized: true, secureContext });
      this.request = https.request;
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets: config.concurrency });
      this.request = http.request;
    }
    this.deadLetterPath = join(deps.persistentPath, 'events', 'dead-letter', `${config.name}.jsonl`);
  }

  deliver(batch: SinkBatch): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    const run = this.run(batch);
    this.running.add(run);
    const forget = (): void => void this.running.delete(run);
    run.then(forget, forget);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signalClosed();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const req of this.requests) req.destroy(this.closedError());
    await Promise.allSettled([...this.running]);
    this.agent.destroy();
  }

  stats(): SinkStats {
    return { ...this.counters };
  }

  private closedError(): VolleyError {
    return new VolleyError('ESINKCLOSED', `webhook sink "${this.name}" is closed`);
  }

  private async run(batch: SinkBatch): Promise<void> {
    if (batch.lines.length === 0) return;
    const id = batchId(batch.events.map((e) => e.event_id));
    // Built once from the log's own lines: no serialising again, and every retry sends the same bytes.
    const json = Buffer.from(`[${batch.lines.join(',')}]`);
    const body = this.config.gzip ? await gzip(json) : json;
    const firstTry = this.now();
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw this.closedError();
      const outcome = await this.attempt(id, json, body);
      if (outcome.kind === 'ok') {
        this.counters.delivered++;
        this.counters.deliveredEvents += batch.lines.length;
        this.counters.lastSuccess = new Date(this.now()).toISOString();
        return;
      }
      if (this.closed) throw this.closedError();
      this.counters.lastError = outcome.error;
      if (outcome.kind === 'reject') {
        await this.deadLetter(batch, id, 'rejected', outcome.error);
        return;
      }
      const delay = outcome.retryAfterMs ?? Math.floor(this.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30)));
      const max = this.config.maxAgeMs;
      // The next try would start past max_age: waiting for it would only delay the dead letter.
      if (max !== undefined && this.now() + delay - firstTry >= max) {
        await this.deadLetter(batch, id, 'max_age', outcome.error);
        return;
      }
      this.counters.retries++;
      this.deps.logger.warn({ sink: this.name, batch: id, events: batch.lines.length, attempt: attempt + 1, delay_ms: delay, err: outcome.error }, 'webhook batch not accepted; retrying');
      await this.wait(delay);
    }
  }

  /** One POST; never throws: every way it can end is an Outcome. */
  private attempt(id: string, json: Buffer, body: Buffer): Promise<Outcome> {
    const headers: Record<string, string> = {
      'user-agent': 'volley-webhook',
      ...this.headers,
      'content-type': 'application/json',
      'content-length': String(body.length),
      ...signHeaders(this.keys, id, this.now(), json),
    };
    if (this.config.gzip) headers['content-encoding'] = 'gzip';
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const finish = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.requests.delete(req);
        resolve(o);
      };
      let answered = false;
      const req = this.request(this.url, { method: 'POST', agent: this.agent, headers }, (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on('data', (c: Buffer) => {
          // Read to the end so the keep-alive socket can carry the next batch; keep only a little for the log.
          if (kept < ERROR_BODY_BYTES) chunks.push(c);
          kept += c.length;
        });
        res.on('error', (err) => finish({ kind: 'retry', error: describe(err) }));
        // A response cut off mid-body may end with 'close' alone.
        res.on('close', () => res.complete || finish({ kind: 'retry', error: 'connection closed before the response ended' }));
        res.on('end', () => {
          if (status >= 200 && status < 300) return finish({ kind: 'ok', status });
          const text = Buffer.concat(chunks).subarray(0, ERROR_BODY_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
          const error = `HTTP ${status}${text ? `: ${text}` : ''}`;
          if (retryable(status)) {
            const header = res.headers['retry-after'];
            const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(Array.isArray(header) ? header[0] : header, this.now()) : undefined;
            return finish({ kind: 'retry', error, retryAfterMs });
          }
          // 3xx included: a redirect is not followed (it could leave TLS or the host the operator named).
          finish({ kind: 'reject', status, error });
        });
      });
      this.requests.add(req);
      // The whole request, not one idle gap: a receiver trickling bytes must not hold a batch forever.
      const timer = setTimeout(() => req.destroy(new VolleyError('ETIMEDOUT', `no answer within ${this.config.timeoutMs} ms`)), this.config.timeoutMs);
      req.on('error', (err) => finish({ kind: 'retry', error: describe(err) }));
      req.on('close', () => answered || finish({ kind: 'retry', error: 'connection closed before any response' }));
      req.end(body);
    });
  }

  /** Waits `ms` or until close(), whichever comes first. */
  private wait(ms: number): Promise<void> {
    if (this.options.sleep) return Promise.race([this.options.sleep(ms), this.closedSignal]);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
      void this.closedSignal.then(() => resolve());
    });
  }

  /**
   * Appends the batch's lines to `<persistent>/events/dead-letter/<sink>.jsonl`
   * and syncs it before deliver() resolves: the cursor moves past the batch only
   * once its events are safe somewhere. A write that fails is retried (with the
   * same backoff) rather than given up: giving up would lose the events.
   */
  private async deadLetter(batch: SinkBatch, id: string, reason: 'rejected' | 'max_age', error: string): Promise<void> {
    const data = Buffer.from(batch.lines.map((l) => `${l}\n`).join(''));
    for (let attempt = 0; ; attempt++) {
      const write = this.deadLetterChain.then(() => this.appendDurably(data));
      this.deadLetterChain = write.catch(() => undefined);
      try {
        await write;
        break;
      } catch (err) {
        this.deps.logger.error({ sink: this.name, batch: id, file: this.deadLetterPath, err: describe(err) }, 'cannot write the webhook dead-letter file; retrying');
        if (this.closed) throw this.closedError();
        await this.wait(Math.floor(this.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30))));
        if (this.closed) throw this.closedError();
      }
    }
    this.counters.deadLettered++;
    this.deps.logger.error(
      {
        sink: this.name,
        batch: id,
        reason,
        err: error,
        events: batch.lines.length,
        first_event_id: batch.events[0]?.event_id,
        last_event_id: batch.events[batch.events.length - 1]?.event_id,
        file: this.deadLetterPath,
      },
      reason === 'rejected' ? 'webhook receiver refused a batch; written to the dead-letter file' : 'webhook batch past max_age; written to the dead-letter file',
    );
  }

  private async appendDurably(data: Buffer): Promise<void> {
    const dir = dirname(this.deadLetterPath);
    const created = await mkdir(dir, { recursive: true });
    const fh = await open(this.deadLetterPath, 'a');
    try {
      const fresh = (await fh.stat()).size === 0;
      for (let written = 0; written < data.length; ) {
        const { bytesWritten } = await fh.write(data, written, data.length - written, null);
        if (bytesWritten === 0) throw new VolleyError('ENOSPC', `short write to ${this.deadLetterPath}`);
        written += bytesWritten;
      }
      await fh.sync();
      // A new file's name (and any directory made for it) must survive a crash too, not only its bytes.
      if (fresh) await syncDir(dir);
      if (created !== undefined) {
        for (let d = dir; d !== dirname(created) && d !== dirname(d); d = dirname(d)) await syncDir(dirname(d));
      }
    } finally {
      await fh.close();
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function describe(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
