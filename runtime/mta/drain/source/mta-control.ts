// What `volley drain` asks of the node's own MTA over its admin API (the same
// bearer token as `volley queue`): stop intake and delivery (POST
// /drain/stop, asked again until no attempt is in flight), undo that (POST
// /drain/resume), how many events still wait (GET /events/status), and stop
// the node (POST /node/stop), after which the drain takes the persistent
// path's lock itself and reads the spool directly.
import { lockPersistentPath } from '../../node-identity';
import { VolleyError, errorCode } from '../../../shared/errors';

export interface MtaControlOptions {
  adminUrl: string;
  headers: Record<string, string>;
  persistentPath: string;
  /** Sleep between polls (tests pass a short one). */
  pollMs?: number;
}

export interface EventsWaiting {
  /** Events read and not yet acknowledged, over every sink (for an s3 sink: closed files not shipped yet). */
  waiting: number;
  /** Sink by sink, for the progress line. */
  sinks: { sink: string; waiting: number }[];
  /** The MTA has no event queue (GET /events/status answered 404): nothing to wait for. */
  none?: boolean;
}

export class MtaControl {
  constructor(private readonly o: MtaControlOptions) {}

  private async call(method: 'GET' | 'POST', path: string): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.o.adminUrl}${path}`, { method, headers: this.o.headers });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // keep the text
    }
    if (res.status === 401) throw new VolleyError('EUNAUTHORIZED', `the MTA admin API refused the token (${path}): ${describe(body)}`);
    return { status: res.status, body };
  }

  /** Whether an MTA answers on the admin address (false: it is not running, e.g. a rerun after it was stopped). */
  async running(): Promise<boolean> {
    try {
      await fetch(`${this.o.adminUrl}/healthz`);
      return true;
    } catch (err) {
      if (errorCode((err as { cause?: unknown }).cause) === 'ECONNREFUSED') return false;
      throw new VolleyError('EADMIN', `the MTA admin API at ${this.o.adminUrl} did not answer: ${(err as Error).message}`);
    }
  }

  /** The running MTA's node id (GET /queue). */
  async nodeId(): Promise<string> {
    const r = await this.call('GET', '/queue');
    const node = (r.body as { node?: unknown } | undefined)?.node;
    if (r.status !== 200 || typeof node !== 'string') throw new VolleyError('EADMIN', `GET /queue answered ${r.status} without a node id: ${describe(r.body)}`);
    return node;
  }

  /** Stops intake and delivery; resolves once every worker says so and no attempt is in flight. */
  async stopIntakeAndDelivery(stopped: () => boolean): Promise<{ queued: number }> {
    for (;;) {
      const r = await this.call('POST', '/drain/stop');
      if (r.status !== 200) throw new VolleyError('EADMIN', `POST /drain/stop answered ${r.status}: ${describe(r.body)}`);
      const b = r.body as { queued: number; inflight: number };
      if (b.inflight === 0 || stopped()) return { queued: b.queued };
      await sleep(this.o.pollMs ?? 200);
    }
  }

  async resume(): Promise<void> {
    const r = await this.call('POST', '/drain/resume');
    if (r.status !== 200) throw new VolleyError('EADMIN', `POST /drain/resume answered ${r.status}: ${describe(r.body)}`);
  }

  async eventsWaiting(): Promise<EventsWaiting> {
    const r = await this.call('GET', '/events/status');
    if (r.status === 404) return { waiting: 0, sinks: [], none: true };
    if (r.status !== 200) throw new VolleyError('EADMIN', `GET /events/status answered ${r.status}: ${describe(r.body)}`);
    const sinks = ((r.body as { sinks?: { sink: string; waitingEvents?: number; waitingBytes?: number; inFlightBatches?: number }[] }).sinks ?? []).map((s) => ({
      sink: s.sink,
      // The count can say 0 while events wait: a batch in flight, or unread bytes (the count
      // estimates them at the average line size, so a short last event rounds to none).
      waiting: Math.max(s.waitingEvents ?? 0, (s.inFlightBatches ?? 0) > 0 || (s.waitingBytes ?? 0) > 0 ? 1 : 0),
    }));
    // The s3 sink ships files, not events: the node's last events are on its disk until S3
    // holds the closed files they are in (the MTA closes its event files once nothing is in flight).
    const shipper = (r.body as { shipper?: { sink: string; unshipped?: number; filesWaiting?: number } }).shipper;
    if (shipper) sinks.push({ sink: shipper.sink, waiting: shipper.unshipped ?? shipper.filesWaiting ?? 0 });
    return { waiting: sinks.reduce((n, s) => n + s.waiting, 0), sinks };
  }

  /** Stops the MTA and waits until its lock on the persistent path is free; returns the drain's own unlock. */
  async stopNode(): Promise<() => void> {
    const r = await this.call('POST', '/node/stop');
    if (r.status !== 202) throw new VolleyError('EADMIN', `POST /node/stop answered ${r.status}: ${describe(r.body)}`);
    return this.lock(true);
  }

  /** Takes the persistent path's lock; with `wait`, polls while the MTA that holds it finishes stopping. */
  async lock(wait: boolean): Promise<() => void> {
    for (;;) {
      try {
        return lockPersistentPath(this.o.persistentPath);
      } catch (err) {
        if (!wait || errorCode(err) !== 'ELOCKED') throw err;
      }
      await sleep(this.o.pollMs ?? 200);
    }
  }
}

function describe(body: unknown): string {
  if (typeof body === 'string') return body.slice(0, 200);
  const e = (body as { error?: unknown }).error;
  return typeof e === 'string' ? e : JSON.stringify(body).slice(0, 200);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
