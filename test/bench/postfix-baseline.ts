/**
 * Prints the "default Postfix on the same machine" baselines for the Volley benchmark:
 *
 *   npx tsx test/bench/postfix-baseline.ts [messages]
 *
 * Load: smtp-source, 20 concurrent sessions, a new connection per message, 2048-byte payload
 * (+ ~150 bytes of smtp-source headers), 10 000 messages by default. Bounded: the whole run
 * is aborted (and Postfix/smtp-sink cleaned up) after 120 s.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { DEFAULT_BENCH_LOAD, measurePostfixIntake, measurePostfixRelay } from './postfix';

const WATCHDOG_MS = 120_000;

async function main(): Promise<void> {
  const messages = Number(process.argv[2] ?? DEFAULT_BENCH_LOAD.messages);
  const { sessions, sizeBytes } = DEFAULT_BENCH_LOAD;
  const holdMessages = Math.min(messages, 1000);
  const version = execFileSync('/usr/sbin/postconf', ['-d', '-h', 'mail_version'], { encoding: 'utf8' }).trim();
  console.log(
    `Postfix ${version}; nproc ${os.availableParallelism()}; load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(`load: ${messages} messages, ${sessions} sessions, ${sizeBytes}-byte payload, new connection per message`);

  const fmt = (r: { msgsPerSec: number; elapsedMs: number }): string =>
    `${r.msgsPerSec.toFixed(0)} msgs/s (${(r.elapsedMs / 1000).toFixed(2)} s)`;

  const intake = await measurePostfixIntake({ messages, sessions, sizeBytes, timeoutMs: 60_000 });
  console.log(`intake (smtp-source -> Postfix, queued, delivered to discard(8)): ${fmt(intake)}`);

  const relay = await measurePostfixRelay({ messages, sessions, sizeBytes, timeoutMs: 60_000 });
  console.log(
    `relay  (smtp-source -> Postfix -> smtp-sink, until the sink has every message): ${fmt(relay)}; intake done at ${(
      relay.intakeElapsedMs / 1000
    ).toFixed(2)} s`,
  );

  const held = await measurePostfixRelay({
    messages: holdMessages,
    sessions,
    sizeBytes,
    sinkDelayMs: 300,
    timeoutMs: 60_000,
  });
  console.log(
    `relay  with the sink holding each transaction 300 ms (${holdMessages} messages, hold via ${held.sinkHoldMode}): ${fmt(held)}`,
  );
}

const watchdog = setTimeout(() => {
  console.error(`postfix-baseline: aborted after ${WATCHDOG_MS / 1000} s`);
  process.exit(2); // exit handlers stop Postfix and smtp-sink
}, WATCHDOG_MS);

main()
  .then(() => clearTimeout(watchdog))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
