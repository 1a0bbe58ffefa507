// `volley drain DEST...`: run on the node being drained; moves its queue to
// other MTAs' drain endpoints and leaves it stopped (runtime/mta/drain/source/).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../../runtime/shared/config/load';
import { DRAIN_SECRET_ENV } from '../../runtime/shared/config/drain';
import { VolleyError } from '../../runtime/shared/errors';
import { loadSecret } from '../../runtime/shared/proxy-protocol/handshake';
import { parseDuration } from '../../runtime/shared/units';
import { DRAIN_IDLE_CLOSE_MS, MAX_REQUEST_TIMEOUT_MS } from '../../runtime/mta/drain/protocol';
import { EXIT, runDrain, StopSignal, type Reporter } from '../../runtime/mta/drain/source/run-drain';
import { adminHeaders } from './admin-token';
import { adminUrl } from './flags';

const EXIT_HELP = `
Sequence: stop intake (SMTP 421 4.3.2, HTTP API 503, /readyz 503) and delivery
(attempts in flight finish); wait for every event to be delivered; stop the MTA;
send every queued message round-robin to DEST... (host[:port], port 8443 by
default), removing it here only once a destination acknowledged it. A
destination that fails gets its batch sent to the next one and is tried again
on its next turn; the drain keeps trying until done or stopped. One that may
have taken a batch without saying so (500, no answer) gets it again, and only
it, until --max-attempts sends of that batch, or --give-up-after with no answer
from it at all (any batch it answers starts that time again): then it is given
up (exit 12).

Exit codes (every one is safe to rerun \`volley drain\` or to start the MTA again):
  0   drained: the queue is empty, the MTA is stopped; retire the node.
  1   another error (see stderr); nothing was removed that was not acknowledged.
  10  --max-event-wait ran out; nothing moved, intake and delivery resumed.
  11  some messages could not be read here; every readable one moved; the
      unreadable ones are named and stay in the spool.
  12  some messages could not be distributed: a destination refuses for good
      (401 wrong secret, 403 address not allowed, 409 itself) or refused a
      message, or was given up (--max-attempts/--give-up-after: it kept
      failing batches it may have stored); the reason and the ids are printed;
      those messages stay queued here (a given-up destination's go to it alone
      on a rerun).
  42  stopped by SIGTERM/SIGINT: batches in flight finished, what was
      acknowledged was removed, the rest stays queued here; the MTA stays
      stopped (or, during the event wait, resumed). Rerun, or start the MTA.
There is no 40/41 (the seed's "unsafe to rerun" after a failed local removal)
and SIGKILL (137) is safe too: a batch is journaled (<persistent>/drain/
journal.jsonl) before it is sent, a rerun sends what the journal left open to
that same destination only, destinations deduplicate by message id, and an MTA
started instead holds those messages back until that destination says whether
it has them. A removal that fails leaves the message queued and journaled: the
next run gets "duplicate" for it and removes it.
`;

/** Plain digits only: Number() would also take "1e3", "0x10" or "3.0", which no one means as a count. */
function int(min: number, max: number) {
  return (v: string): number => {
    const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    return n;
  };
}

function duration(v: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** --give-up-after's floor: 0s gives a destination up at its first failure, and well under a second gives it no time to answer a retry. */
const MIN_GIVE_UP_MS = 1000;

function durationAtLeast(minMs: number, why: string) {
  return (v: string): number => {
    const ms = duration(v);
    if (ms < minMs) throw new InvalidArgumentError(`must be at least ${minMs / 1000}s: ${why}`);
    return ms;
  };
}

/**
 * --request-timeout's ceiling: a destination closes a connection silent for
 * DRAIN_IDLE_CLOSE_MS (protocol.ts), and a longer timeout would let it cut an
 * answer the drain still waits for, so the batch would be sent again for nothing.
 */
function requestTimeout(v: string): number {
  const ms = duration(v);
  if (ms > MAX_REQUEST_TIMEOUT_MS) {
    throw new InvalidArgumentError(`must be at most ${MAX_REQUEST_TIMEOUT_MS / 60_000}m: a destination closes a connection silent for ${DRAIN_IDLE_CLOSE_MS / 60_000}m, which would cut the answer`);
  }
  return ms;
}

/** The seed's default: 2 x CPU, at least 10, at most 64. */
export function defaultConcurrency(cpus = availableParallelism()): number {
  return Math.min(64, Math.max(10, 2 * cpus));
}

interface DrainFlags {
  bindIp?: string;
  waitOnEvents: boolean;
  maxEventWait?: number;
  concurrency?: number;
  json?: boolean;
  config: string;
  persistentPath: string;
  admin?: string;
  tokenFile?: string;
  secretFile?: string;
  caFile?: string;
  insecureTls?: boolean;
  batchSize: number;
  requestTimeout?: number;
  retryDelay?: number;
  maxAttempts?: number;
  giveUpAfter?: number;
}

function reporter(json: boolean): Reporter {
  const err = (s: string): void => void process.stderr.write(`drain: ${s}\n`);
  const out = (o: Record<string, unknown>): void => {
    if (json) process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...o })}\n`);
  };
  return {
    phase: (name, detail) => {
      err(`${name}${detail ? ` ${JSON.stringify(detail)}` : ''}`);
      out({ type: 'phase', phase: name, ...detail });
    },
    problem: (d) => {
      err(d.message);
      out({ type: 'problem', ...d });
    },
    progress: (p) => {
      const per = Object.entries(p.moved).map(([d, n]) => `${d} ${n}`).join(', ');
      err(`moved ${p.total - p.remaining} of ${p.total} (${per}), ${p.ratePerSecond} msg/s, ${p.remaining} remaining`);
      out({ type: 'progress', ...p });
    },
    result: (code, d) => {
      err(`done, exit ${code}`);
      out({ type: 'result', exit: code, ...d });
    },
  };
}

export function registerDrain(program: Command): void {
  program
    .command('drain')
    .description('move this node\'s queue to other MTAs over HTTPS, then leave it stopped')
    .argument('<dest...>', 'drain endpoints of other MTAs (or a load balancer): host[:port], port 8443 by default')
    .option('--bind-ip <ip>', 'local address of the outgoing HTTPS connections')
    .option('--no-wait-on-events', 'do not wait for the events to be delivered first')
    .option('--max-event-wait <duration>', 'give up (exit 10) when events still wait after this long, e.g. 15s, 2m', duration)
    .option('--concurrency <n>', 'batches in flight (default 2 x CPU, min 10, max 64)', int(1, 64))
    .option('--json', 'progress and the result as JSON lines on stdout')
    .option('--config <file>', 'the Volley config file (drain.secret_file, delivery.max_lifetime)', process.env.VOLLEY_CONFIG ?? '/etc/volley/volley.yaml')
    .option('--persistent-path <dir>', 'the MTA\'s persistent path', process.env.VOLLEY_PERSISTENT_PATH ?? '/var/lib/volley')
    .option('--admin <addr:port>', 'this MTA\'s admin address (default VOLLEY_ADMIN or 127.0.0.1:8025)')
    .option('--token-file <file>', 'the admin token (default: VOLLEY_ADMIN_TOKEN)')
    .option('--secret-file <file>', `the drain secret (default: drain.secret_file, else ${DRAIN_SECRET_ENV})`)
    .option('--ca-file <pem>', 'certificates to trust for the destinations (a self-signed fleet)')
    .option('--insecure-tls', 'do not verify the destinations\' certificates (labs only: the HMAC still authenticates the request, not the answer)')
    .option('--batch-size <n>', 'messages per request', int(1, 10_000), 200)
    .option('--request-timeout <duration>', `no answer this long: the batch waits for that destination's next turn (default 60s, at most ${MAX_REQUEST_TIMEOUT_MS / 60_000}m)`, requestTimeout)
    .option('--retry-delay <duration>', 'pause after a destination failed a batch it may hold, or all failed it (grows to 16x; default 1s)', duration)
    .option('--max-attempts <n>', 'sends of one batch to a destination that cannot say whether it stored it (HTTP 500, no answer) before that destination is given up (exit 12; default 10, at least 2); counted per batch: answers to its other batches do not reset it', int(2, 1_000_000))
    .option('--give-up-after <duration>', 'or this long after such a destination\'s first failure with no answer from it since: any batch it answers starts this time again (default 10m, at least 1s)', durationAtLeast(MIN_GIVE_UP_MS, 'shorter gives a destination up with no time to answer a retry'))
    .addHelpText('after', EXIT_HELP)
    .action(async (dests: string[], flags: DrainFlags) => {
      const report = reporter(flags.json === true);
      const signal = new StopSignal();
      const onSignal = (name: string) => () => {
        report.phase(`${name}: stopping cleanly (batches in flight finish)`);
        signal.stop();
      };
      process.on('SIGTERM', onSignal('SIGTERM'));
      process.on('SIGINT', onSignal('SIGINT'));
      let code: number;
      try {
        const config = loadConfig(flags.config);
        const secretFile = flags.secretFile ?? config.drain?.secretFile;
        const secret = drainSecret(secretFile);
        code = await runDrain(
          {
            destinations: dests,
            persistentPath: flags.persistentPath,
            maxLifetimeMs: config.delivery.maxLifetimeMs,
            adminUrl: adminUrl(flags.admin ?? process.env.VOLLEY_ADMIN ?? `${config.admin.address}:${config.admin.port}`),
            adminHeaders: adminHeaders(flags.tokenFile),
            secret,
            secretFile: secretFile && resolve(secretFile),
            bindIp: flags.bindIp,
            ca: flags.caFile ? readFileSync(flags.caFile) : undefined,
            insecure: flags.insecureTls === true,
            waitOnEvents: flags.waitOnEvents,
            eventSinks: config.events.sinks,
            maxEventWaitMs: flags.maxEventWait,
            concurrency: flags.concurrency ?? defaultConcurrency(),
            batchSize: flags.batchSize,
            requestTimeoutMs: flags.requestTimeout ?? 60_000,
            retryDelayMs: flags.retryDelay ?? 1000,
            giveUp: { maxAttempts: flags.maxAttempts, afterMs: flags.giveUpAfter },
            report,
          },
          signal,
        );
      } catch (err) {
        const e = err as Error & { code?: string };
        report.problem({ message: e.message, code: e.code });
        report.result(EXIT.other, {});
        code = EXIT.other;
      }
      process.exit(code);
    });
}

function drainSecret(file: string | undefined): Buffer {
  try {
    return loadSecret({ file, env: DRAIN_SECRET_ENV });
  } catch (err) {
    throw new VolleyError('ESECRET', `the drain secret: ${(err as Error).message.replace('proxy secret', 'drain secret')} (--secret-file, drain.secret_file or ${DRAIN_SECRET_ENV})`);
  }
}
