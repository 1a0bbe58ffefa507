// `volley events status [--json]` and `volley events replay --sink NAME
// --from TIME`: the event queue of one MTA, through its admin API (token as
// for `volley queue`).
import type { Command } from 'commander';
import { adminHeaders } from './admin-token';
import { adminUrl } from './flags';
import type { ShipperStats } from '../../runtime/mta/events/sinks/s3-shipper';

interface SinkLine {
  sink: string;
  type: string;
  waitingEvents: number;
  oldestAgeSeconds: number;
  deliveredEvents: number;
  retries: number;
  deadLettered: number;
  skippedEvents: number;
  lastSuccess?: string;
  lastError?: string;
  replay?: { from: string };
}

/** The s3 sink's shipper (GET /events/status `shipper`): its stats, under its sink's name. */
type ShipperLine = ShipperStats & { sink: string };

export function registerEvents(program: Command): void {
  const events = program.command('events').description('the event queue: per-sink status, and replays');
  events
    .command('status')
    .description('per sink: events waiting, oldest age, last success, last error, retries, dead-lettered, skipped')
    .option('--admin <addr:port>', 'the MTA admin address')
    .option('--token-file <file>', 'the admin token (default: VOLLEY_ADMIN_TOKEN)')
    .option('--json', 'the whole answer, as JSON')
    .action(async (flags: { admin?: string; tokenFile?: string; json?: boolean }) => {
      const res = await fetch(`${adminUrl(flags.admin)}/events/status`, { headers: adminHeaders(flags.tokenFile) });
      const body = (await res.json()) as { sinks?: SinkLine[]; shipper?: ShipperLine; error?: string };
      if (!res.ok) process.exitCode = 1;
      if (flags.json || !res.ok || !body.sinks) {
        process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
        return;
      }
      if (body.sinks.length === 0 && !body.shipper) process.stdout.write('no sinks configured (events.sinks)\n');
      for (const s of body.sinks) {
        process.stdout.write(
          `${s.sink} (${s.type}): ${s.waitingEvents} waiting, oldest ${Math.round(s.oldestAgeSeconds)}s; ${s.deliveredEvents} delivered, ${s.retries} retries, ${s.deadLettered} dead-lettered, ${s.skippedEvents} skipped` +
            `; last success ${s.lastSuccess ?? 'never'}${s.lastError ? `; last error: ${s.lastError}` : ''}${s.replay ? `; replaying from ${s.replay.from}` : ''}\n`,
        );
      }
      const sh = body.shipper;
      // The s3 sink ships closed files, not events: its own line, with the error an operator needs when files pile up.
      if (sh) {
        process.stdout.write(
          `${sh.sink} (s3): ${sh.filesShipped} files shipped (${sh.bytesShipped} bytes), ${sh.filesWaiting} waiting, ${sh.failures} failed rounds in a row` +
            `; last success ${sh.lastSuccess ?? 'never'}${sh.lastError ? `; last error: ${sh.lastError}` : ''}\n`,
        );
      }
    });
  events
    .command('replay')
    .description('send one sink again what it acknowledged since TIME (ISO 8601, or a duration ago: 2h), from the files still on the node; its cursor does not move')
    .requiredOption('--sink <name>', 'the sink')
    .requiredOption('--from <time>', 'ISO 8601 time, or a duration ago (2h)')
    .option('--admin <addr:port>', 'the MTA admin address')
    .option('--token-file <file>', 'the admin token (default: VOLLEY_ADMIN_TOKEN)')
    .action(async (flags: { sink: string; from: string; admin?: string; tokenFile?: string }) => {
      const res = await fetch(`${adminUrl(flags.admin)}/events/replay`, {
        method: 'POST',
        headers: { ...adminHeaders(flags.tokenFile), 'content-type': 'application/json' },
        body: JSON.stringify({ sink: flags.sink, from: flags.from }),
      });
      process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
      if (!res.ok) process.exitCode = 1;
    });
}
