// A planned switchover (`volley mirror switchover`, run on the primary):
// the roles swap with nothing lost. In order:
//   1. intake stops (POST /drain/stop on the MTA's admin API, asked until no
//      delivery attempt is in flight): nothing new is acknowledged here;
//   2. wait until the secondary holds everything durably (no lag, and a
//      durable position later than the stop);
//   3. the MTA stops (SIGTERM) and has exited: what it writes on the way out
//      (the last attempts' records, cursors) is on disk;
//   4. wait again until the secondary holds that;
//   5. the replication loop hands over at the head: this node becomes the
//      secondary of epoch + 1 (durably) and tells the peer, which takes the
//      lease (if there is an arbiter), becomes the primary of epoch + 1 and
//      runs its promote_command.
// A failure before step 3 gives intake back (POST /drain/resume) and leaves
// the pair as it was.
import { VolleyError, errorCode } from '../shared/errors';
import type { Logger } from '../shared/log';
import type { MirrorConfig } from './config';
import type { MirrorStatus } from './daemon';
import { liveMtaPid, mtaAdminToken, mtaAdminUrl, stopIntake } from './mta-fence';

export interface SwitchoverHost {
  config: MirrorConfig;
  logger: Logger;
  status(): MirrorStatus;
  /** Asks the replication loop to hand the role over at the head; resolves with the peer's new epoch. */
  requestHandover(timeoutMs: number): Promise<number>;
  /** Stops the MTA (SIGTERM; tests record it). */
  kill(pid: number): void;
  now(): number;
}

export interface SwitchoverResult {
  epoch: number;
  steps: string[];
}

const POLL_MS = 50;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function runSwitchover(h: SwitchoverHost, timeoutMs: number): Promise<SwitchoverResult> {
  const steps: string[] = [];
  const step = (what: string): void => {
    steps.push(what);
    h.logger.warn({ step: what }, 'mirror: switchover');
  };
  const deadline = h.now() + timeoutMs;
  const s = h.status();
  if (s.role !== 'primary') throw new VolleyError('ENOTPRIMARY', `this node is the secondary (epoch ${s.epoch}): run the switchover on the primary`);
  // Under load the lag is rarely 0 at any one moment; within a batch of the head is "caught up" for starting: the waits below close the gap.
  if (!s.peer_connected || (!s.caught_up && s.lag_bytes > h.config.batchMaxBytes)) {
    throw new VolleyError('ENOTCAUGHTUP', `the secondary is ${s.peer_connected ? `${s.lag_bytes} bytes behind` : 'not connected'}: a switchover now would stop intake for a whole catch-up (see \`volley mirror status\`)`);
  }

  const durableAfter = async (t: number, what: string): Promise<void> => {
    for (;;) {
      const st = h.status();
      if (st.role !== 'primary') throw new VolleyError('ESWITCHOVER', `this node stopped being the primary while waiting for ${what}`);
      if (st.peer_connected && st.caught_up && st.lag_bytes === 0 && st.durable_through && Date.parse(st.durable_through) >= t) return;
      if (h.now() > deadline) throw new VolleyError('ETIMEDOUT', `the secondary did not hold ${what} durably in time (lag ${st.lag_bytes} bytes, ${st.peer_connected ? 'connected' : 'not connected'})`);
      await sleep(POLL_MS);
    }
  };

  const pid = liveMtaPid(h.config.persistentPath);
  let token: string | undefined;
  if (pid !== undefined) {
    token = mtaAdminToken(h.config.mtaAdminTokenFile);
    const o = { persistentPath: h.config.persistentPath, mtaAdmin: h.config.mtaAdmin, tokenFile: h.config.mtaAdminTokenFile, logger: h.logger };
    try {
      if (token) {
        for (;;) {
          const r = await stopIntake(o, token, 5_000);
          if (!r.ok) throw new VolleyError('EADMIN', `cannot stop the MTA's intake: ${r.error}`);
          if (r.inflight === 0 || r.inflight === undefined) break;
          if (h.now() > deadline) throw new VolleyError('ETIMEDOUT', `${r.inflight} delivery attempts still in flight`);
          await sleep(POLL_MS);
        }
        step('intake and delivery stopped (POST /drain/stop)');
        await durableAfter(h.now(), 'the queue at the stop');
        step('the secondary holds the queue durably');
      }
    } catch (err) {
      if (token) await resumeIntake(h, token);
      throw err;
    }
    h.kill(pid);
    for (;;) {
      if (liveMtaPid(h.config.persistentPath) === undefined) break;
      if (h.now() > deadline) throw new VolleyError('ETIMEDOUT', `the MTA (pid ${pid}) did not stop in time: intake is stopped; the pair is unchanged (stop it, then run the switchover again)`);
      await sleep(POLL_MS);
    }
    step(`the MTA (pid ${pid}) stopped`);
  } else {
    step('no MTA runs on this persistent path');
  }
  await durableAfter(h.now(), 'everything the MTA wrote');
  step('the secondary holds everything durably');
  const epoch = await h.requestHandover(Math.max(1_000, deadline - h.now())).catch((err: Error) => {
    // Still the primary (nothing was handed over), but its MTA is stopped now.
    if (h.status().role === 'primary') throw new VolleyError(errorCode(err) ?? 'ESWITCHOVER', `${err.message}; this node is still the primary and its MTA is stopped: start it again, or run the switchover again once the secondary is connected`);
    throw err;
  });
  step(`the peer took over as the primary of epoch ${epoch}; this node is its secondary`);
  return { epoch, steps };
}

async function resumeIntake(h: SwitchoverHost, token: string): Promise<void> {
  try {
    const res = await fetch(`${mtaAdminUrl(h.config.mtaAdmin)}/drain/resume`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
    h.logger.warn({ status: res.status }, 'mirror: switchover abandoned: intake resumed (POST /drain/resume)');
  } catch (err) {
    h.logger.error({ err: (err as Error).message }, 'mirror: switchover abandoned and intake could not be resumed: run `volley queue` / POST /drain/resume on the MTA');
  }
}
