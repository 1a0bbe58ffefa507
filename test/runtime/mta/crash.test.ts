import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SpoolPartition } from '../../../runtime/mta/spool/partition';
import { ADMIN_AUTH, TEST_TOKEN, writeTestConfig } from '../../helpers/config';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { SmtpDialog, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir();
const pp = join(dir, 'pp');
const acked = new Map<string, string>(); // id -> token that must be in its body

async function smtpInjector(mta: MtaProcess, tag: string, stop: () => boolean): Promise<void> {
  let n = 0;
  while (!stop()) {
    let s: SmtpDialog | undefined;
    try {
      s = await SmtpDialog.open(mta.smtpPort);
      await s.reply();
      await s.command('EHLO injector.test');
      const token = `tok-${tag}-${n++}`;
      const r = await s.transaction('a@example.test', ['b@example.test', 'c@example.org'], message(token, `${token} `.repeat(50)));
      if (r.code === 250) acked.set(/queued as (\S+)/.exec(r.text)![1], token);
      await s.quit();
    } catch {
      s?.destroy();
      return; // the MTA died under us: expected
    }
  }
}

async function httpInjector(mta: MtaProcess, tag: string, stop: () => boolean): Promise<void> {
  let n = 0;
  while (!stop()) {
    const tokens = [0, 1, 2].map((i) => `http-${tag}-${n}-${i}`);
    n++;
    try {
      const res = await fetch(`${mta.httpUrl}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}` },
        body: JSON.stringify({ messages: tokens.map((t) => ({ from: 'a@example.test', to: ['d@example.test'], subject: t, text: `${t} `.repeat(50) })) }),
      });
      const body = (await res.json()) as { results: { index: number; id?: string }[] };
      for (const r of body.results) if (r.id) acked.set(r.id, tokens[r.index]);
    } catch {
      return;
    }
  }
}

test('every acknowledged message survives repeated kill -9 of the whole MTA, intact', async () => {
  // Deliveries go nowhere (port 9, retry in an hour): accepted mail stays queued.
  const config = writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] });
  const rounds = 4;
  for (let round = 0; round < rounds; round++) {
    const mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
    let stopped = false;
    const injectors = [
      ...Array.from({ length: 12 }, (_, i) => smtpInjector(mta, `${round}-${i}`, () => stopped)),
      ...Array.from({ length: 4 }, (_, i) => httpInjector(mta, `${round}-${i}`, () => stopped)),
    ];
    await new Promise((r) => setTimeout(r, 400 + Math.random() * 800));
    await mta.crash();
    stopped = true;
    await Promise.all(injectors);
  }
  expect(acked.size).toBeGreaterThan(200);

  // Read the spool offline, as the next start would.
  const found = new Map<string, string>();
  for (const p of readdirSync(join(pp, 'spool'))) {
    const part = await SpoolPartition.open({ dir: join(pp, 'spool', p) });
    for (const entry of part.entries()) found.set(entry.id, (await part.read(entry)).body.toString());
    await part.close();
  }
  const missing = [...acked.keys()].filter((id) => !found.has(id));
  expect(missing).toEqual([]);
  for (const [id, token] of acked) expect(found.get(id)).toContain(token);

  // And the MTA starts on that spool and reports it.
  const mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  const q = (await (await fetch(`${mta.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { workers: { queued: number }[] };
  expect(q.workers.reduce((n, w) => n + w.queued, 0)).toBe(found.size);
  await mta.stop();
}, 120_000);
