import { spawn } from 'node:child_process';
import { SMTP_SOURCE_BIN } from './postfix-tools';

export interface SourceTally {
  /** Recipient addresses whose transaction ended in 250 (each names one message). */
  acked: string[];
  /** What the client saw go wrong: a refused transaction, or a session lost (smtp-source's fatal). */
  errors: string[];
  /** smtp-source runs that died on an error and were started again for the rest of their share. */
  restarts: number;
  /** Recipient -> the message id the 250 named ("queued as <id>"), when it named one. */
  queuedAs?: Map<string, string>;
}

/**
 * Postfix's smtp-source as the load, with the list of what was acknowledged.
 *
 * smtp-source prints no such list, and exits on the first lost connection.
 * So this runs one smtp-source per session (`-s 1`; without `-d` each
 * message gets its own connection), each with `-v` (its SMTP dialog on stderr) and `-N` (a sequence
 * number prepended to the recipient, so every message has its own address,
 * `<n>s<session>r<run>@domain`); a run that dies is started again for the
 * rest of its share, as an injector would retry. The MTA names that one
 * recipient in its Received header, so a sink's copy says which message it is.
 */
export async function smtpSourceWithAcks(opts: {
  port: number;
  sessions: number;
  messages: number;
  sizeBytes?: number;
  domain?: string;
  onAck?: (n: number) => void;
  /** Filled as the run goes (a caller whose MTA dies mid-run still knows what was acknowledged when this throws). */
  tally?: SourceTally;
}): Promise<SourceTally> {
  const tally: SourceTally = opts.tally ?? { acked: [], errors: [], restarts: 0 };
  const share = (i: number): number => Math.floor(opts.messages / opts.sessions) + (i < opts.messages % opts.sessions ? 1 : 0);
  await Promise.all(
    Array.from({ length: opts.sessions }, async (_, session) => {
      let left = share(session);
      let fruitless = 0;
      for (let run = 0; left > 0; run++) {
        if (run > 0) tally.restarts++;
        const done = await runOne({ ...opts, count: left, to: `s${session}r${run}@${opts.domain ?? 'sink.test'}` }, tally);
        left -= done;
        fruitless = done === 0 ? fruitless + 1 : 0;
        if (fruitless >= 10) throw new Error(`smtp-source session ${session} keeps failing: ${tally.errors.slice(-3).join('; ')}`);
        // A run that finished nothing (refused, no greeting) waits a little longer each time, as an injector backs off.
        if (fruitless > 0) await new Promise((r) => setTimeout(r, 100 * fruitless));
      }
    }),
  );
  return tally;
}

/** One smtp-source run; resolves with how many transactions it finished (acknowledged or refused). */
function runOne(o: { port: number; count: number; to: string; sizeBytes?: number; onAck?: (n: number) => void }, tally: SourceTally): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['-v', '-N', '-s', '1', '-m', String(o.count), '-l', String(o.sizeBytes ?? 2048), '-f', 'load@source.test', '-t', o.to, `127.0.0.1:${o.port}`];
    const child = spawn(SMTP_SOURCE_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let rest = '';
    let rcpt: string | undefined;
    let afterDot = false;
    let refused = false;
    let finished = 0;
    child.stderr.setEncoding('latin1').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const m = /^\S*smtp-source: (.*)$/.exec(line);
        if (!m) continue;
        const said = m[1];
        const to = /^RCPT TO:<([^>]+)>/.exec(said);
        if (to) rcpt = to[1];
        else if (said === '.') afterDot = true;
        else if (afterDot && said.startsWith('<<< ')) {
          afterDot = false;
          finished++;
          if (said.startsWith('<<< 250')) {
            tally.acked.push(rcpt!);
            const id = /queued as (\S+)/.exec(said)?.[1];
            if (id) (tally.queuedAs ??= new Map()).set(rcpt!, id);
            o.onAck?.(tally.acked.length);
          } else {
            // smtp-source stops at a refusal: the fatal line that follows is this same error.
            tally.errors.push(`${rcpt}: ${said.slice(4)}`);
            refused = true;
          }
          rcpt = undefined;
        } else if (/fatal:/.test(said)) {
          // The session broke: the client saw an error. A transaction begun and
          // not answered counts as finished (its message may still arrive);
          // the next run starts with the message after it.
          if (!refused) tally.errors.push(`${rcpt ?? '(between messages)'}: ${said}`);
          if (rcpt) finished++;
          rcpt = undefined;
          afterDot = false;
        }
      }
    });
    child.once('error', reject);
    child.once('close', () => resolve(finished));
  });
}
