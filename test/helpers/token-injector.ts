import { SmtpDialog } from './smtp-dialog';

export interface InjectionTally {
  acked: string[];
  /** Transactions that did not end in a 250: connection errors and refusals, with what happened. */
  errors: string[];
}

/**
 * A load generator like smtp-source (N sessions, a new connection per
 * message) that also remembers which messages were acknowledged: each carries
 * a unique token in its Subject, so a test can check every acknowledged
 * message arrived, and count duplicates. smtp-source reports no such list.
 */
export async function injectTokens(opts: { port: number; sessions: number; messages: number; sizeBytes?: number; onAck?: (n: number) => void }): Promise<InjectionTally> {
  const tally: InjectionTally = { acked: [], errors: [] };
  let next = 0;
  const filler = 'x'.repeat(76) + '\r\n';
  const body = filler.repeat(Math.max(0, Math.floor((opts.sizeBytes ?? 2048) / filler.length)));
  await Promise.all(
    Array.from({ length: opts.sessions }, async () => {
      for (let i = next++; i < opts.messages; i = next++) {
        const token = `tok${i}`;
        let s: SmtpDialog | undefined;
        try {
          s = await SmtpDialog.open(opts.port);
          const greet = await s.reply();
          if (greet.code !== 220) throw new Error(`greeting ${greet.code}`);
          await s.command('EHLO load.test');
          const r = await s.transaction('load@source.test', [`r${i}@sink.test`], `Subject: ${token}\r\n\r\n${body}`);
          if (r.code === 250) {
            tally.acked.push(token);
            opts.onAck?.(tally.acked.length);
          } else tally.errors.push(`${token}: ${r.code} ${r.text}`);
          await s.quit();
        } catch (err) {
          s?.destroy();
          tally.errors.push(`${token}: ${(err as Error).message}`);
        }
      }
    }),
  );
  return tally;
}
