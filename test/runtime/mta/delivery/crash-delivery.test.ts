import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_AUTH, deliveryConfigYaml } from '../../../helpers/config';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { ScriptedMx } from '../../../helpers/scripted-mx';
import { SmtpDialog, message } from '../../../helpers/smtp-dialog';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const CONNECTIONS = 8;

test('kill -9 during heavy delivery: after a restart every acknowledged message arrives; duplicates only from transactions in flight', async () => {
  const mx = new ScriptedMx({ holdMs: 5 });
  const port = await mx.listen();
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${port} }]
throttles: [{ destination: "*", max_connections: ${CONNECTIONS} }]
delivery: { retry: [1s] }
`),
  );
  const pp = join(dir, 'pp');
  let mta: MtaProcess = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH });
  const tokens: string[] = [];
  await Promise.all(
    Array.from({ length: 10 }, async (_, w) => {
      const s = await SmtpDialog.open(mta.smtpPort);
      await s.reply();
      await s.command('EHLO injector.test');
      for (let i = 0; i < 80; i++) {
        const token = `token-${w}-${i}`;
        const r = await s.transaction('a@shop.example', [`r${i}@rcpt.test`], message(token, token));
        if (r.code === 250) tokens.push(token);
      }
      await s.quit();
    }),
  );
  expect(tokens).toHaveLength(800);

  await fetch(`${mta.adminUrl}/queue/resume`, { method: 'POST', headers: ADMIN_AUTH });
  await mx.waitFor(300, 20_000); // heavy delivery under way
  await mta.crash();
  const atKill = mx.messages.length;
  mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  try {
    const until = Date.now() + 30_000;
    const arrived = (): Set<string> => new Set(mx.messages.map((m) => /Subject: (\S+)/.exec(m.body)![1]));
    while (arrived().size < tokens.length && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    const seen = arrived();
    expect(tokens.filter((t) => !seen.has(t))).toEqual([]);
    const counts = new Map<string, number>();
    for (const m of mx.messages) {
      const t = /Subject: (\S+)/.exec(m.body)![1];
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    const duplicates = [...counts.values()].filter((n) => n > 1).length;
    // A duplicate is a message the MX accepted whose result was not yet durable
    // here: at most one transaction per open connection, on each worker, plus
    // the results waiting in one group commit.
    process.stdout.write(`crash during delivery: ${atKill} delivered before the kill, ${duplicates} duplicates\n`);
    expect(duplicates).toBeLessThanOrEqual(CONNECTIONS * 4);
    expect([...counts.values()].every((n) => n <= 2)).toBe(true);
  } finally {
    await mta.stop();
    await mx.close();
  }
}, 90_000);
