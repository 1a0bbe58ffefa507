// One of the lb's worker processes: accepts on the listeners the node's
// workers share (node:cluster, SCHED_NONE), relays sessions, and leaves
// health to the primary: it reports what real traffic saw and takes the
// primary's word on which backends are up, its reloads and its stop.
import { VolleyError } from '../shared/errors';
import type { Logger } from '../shared/log';
import { isToLbWorker, LB_OPTIONS_ENV, type FromLbWorker } from './ipc';
import { ClientGate } from './client-gate';
import { startLb } from './lb';
import type { LbOptions } from './options';

/** The options the primary passed (its current ones), without the admin port: that one is the primary's. */
export function workerOptions(env: NodeJS.ProcessEnv = process.env): LbOptions {
  const text = env[LB_OPTIONS_ENV];
  if (!text) throw new VolleyError('EBADCONFIG', `an lb worker needs ${LB_OPTIONS_ENV} from its primary`);
  return { ...(JSON.parse(text) as LbOptions), admin: undefined };
}

/**
 * How long a worker's per-client counts may wait before they go to the
 * primary: the most a client can pass its limit by is what it opens on other
 * workers meanwhile. At 20 ms the reports (and the primary's wake-ups for
 * them) cost the node 5-15 µs a session at ~4,000 sessions a second; at 100
 * ms and more, nothing measurable.
 */
export const CLIENT_REPORT_MS = 100;

export async function runLbWorker(logger: Logger): Promise<void> {
  const send = (m: FromLbWorker): void => {
    if (process.connected) process.send?.(m);
  };
  // --max-connections-per-client over the node: the primary's word on who is at the limit (client-gate.ts), and
  // this worker's counts reported to it at most every CLIENT_REPORT_MS, only those that changed.
  const gate = new ClientGate();
  const changed = new Map<string, number>();
  let report: NodeJS.Timeout | undefined;
  const flush = (): void => {
    clearTimeout(report);
    report = undefined;
    const counts = [...changed];
    changed.clear();
    gate.sent(counts);
    send({ type: 'lb-client-counts', counts });
  };
  const lb = await startLb(workerOptions(), logger, {
    clients: {
      full: (address, mine, limit) => gate.full(address, mine, limit),
      changed: (address, open) => {
        changed.set(address, open);
        // A client at the limit is told at once: a session it closed here frees a slot on every worker
        // within an IPC round trip, not a report later (only such clients: the rest wait for the batch).
        if (gate.limited(address)) return flush();
        report ??= setTimeout(flush, CLIENT_REPORT_MS);
      },
    },
    authority: {
      failure: (listener, backend, reason, detail) => send({ type: 'lb-failure', listener, backend, reason, detail }),
      refusal: (listener, backend, detail) => send({ type: 'lb-refusal', listener, backend, detail }),
      success: (listener, backend) => send({ type: 'lb-success', listener, backend }),
    },
  });
  let stopping = false;
  const stop = (now: boolean): void => {
    if (now) lb.closeSessions();
    if (stopping) return;
    stopping = true;
    void lb.stop().then(() => process.exit(0));
  };
  process.on('message', (m: unknown) => {
    if (!isToLbWorker(m)) return;
    if (m.type === 'lb-client-limits') {
      gate.told(m.changes);
    } else if (m.type === 'lb-up') for (const s of m.states) lb.setUp(s.listener, s.backend, s.up);
    else if (m.type === 'lb-options') {
      try {
        lb.apply({ ...m.options, admin: undefined });
      } catch (err) {
        // The primary validated these options; a refusal here is a bug, logged and not fatal.
        logger.error({ err }, 'reload refused by a worker');
      }
    } else if (m.type === 'lb-query') {
      void (m.what === 'status' ? Promise.resolve(lb.status()) : lb.metricsJson()).then((data) => send({ type: 'lb-reply', id: m.id, data }));
    } else if (m.type === 'lb-stop') stop(m.now);
  });
  // systemd signals every process of the unit: a worker stops gracefully on its own signal too.
  let signals = 0;
  const onSignal = (): void => stop(++signals > 1);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // A SIGHUP for the unit reaches the workers too: the primary reloads them, the signal alone must not kill one.
  process.on('SIGHUP', () => undefined);
  send({ type: 'lb-ready' });
}
