// Issue 14 item 1, end to end: an MTA whose persistent path (a small tmpfs)
// is filled with delivery paused, then filled to the last block by something
// else, delivers everything it acknowledged exactly once when delivery
// resumes with nothing freed, logs every outcome, refuses intake while it is
// below spool.min_free, and takes mail again by itself once the delivered
// mail's segments are freed.
// Mounts a tmpfs: needs root, as CI and the dev machines run.
import { chmodSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml, ADMIN_AUTH } from '../../../helpers/config';
import { readAttempts } from '../../../helpers/attempt-log';
import { startMta, type MtaProcess } from '../../../helpers/mta-process';
import { startSmtpSink, type SmtpSinkHandle } from '../../../helpers/postfix-tools';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { SmtpDialog, message } from '../../../helpers/smtp-dialog';
import { fillVolume, mountTmpfs } from '../../../helpers/tmpfs';

// Not tempDir(): its clean-up would run before the unmount below.
const fs = mountTmpfs('volley-diskfull-delivery-', '8m');
const { dir, mnt } = fs;
chmodSync(dir, 0o755); // smtp-sink runs as nobody and writes its dumps under it
const pp = join(mnt, 'pp');
const filler = join(mnt, 'filler');
let sink: SmtpSinkHandle | undefined;
let mta: MtaProcess | undefined;

// The MTA's whole process group goes first (stop() SIGKILLs it if the graceful
// stop hangs), then the tmpfs is unmounted, even when a stop throws.
afterAll(() =>
  fs.release(
    () => mta?.stop(),
    () => process.env.DISKFULL_LOG && writeFileSync(process.env.DISKFULL_LOG, mta?.log() ?? ''),
    () => sink?.stop(),
  ),
);

/** One session's injections until the MTA refuses one; returns the acknowledged tokens and queue ids, and the refusal. */
async function injectUntilRefused(port: number, session: number): Promise<{ accepted: Map<string, string>; refusal: { code: number; text: string } }> {
  const s = await SmtpDialog.open(port);
  await s.reply();
  await s.command('EHLO injector.test');
  const accepted = new Map<string, string>();
  try {
    for (let i = 0; ; i++) {
      const token = `t-${session}-${i}`;
      const r = await s.transaction('a@shop.example', [`r${i}@rcpt.test`], message(token, `${token} ${'x'.repeat(60)}\r\n`.repeat(18)));
      if (r.code !== 250) {
        await s.command('RSET');
        return { accepted, refusal: r };
      }
      accepted.set(token, /queued as (\S+)/.exec(r.text)![1]);
    }
  } finally {
    await s.quit();
  }
}

async function probe(port: number, token: string): Promise<{ code: number; text: string }> {
  const s = await SmtpDialog.open(port);
  await s.reply();
  await s.command('EHLO injector.test');
  const r = await s.transaction('a@shop.example', ['probe@rcpt.test'], message(token, token));
  await s.quit();
  return r;
}

test('a disk filled with delivery paused, then resumed with nothing freed: each message reaches the sink once, every outcome is logged, intake resumes by itself', async () => {
  sink = await startSmtpSink({ dumpDir: join(dir, 'dumps') });
  const config = join(dir, 'volley.yaml');
  // 8 MB volume: 2 x 512 KB reserve files, intake stops at 3 MB free, so about
  // 4 MB of mail. Small segments, so that finished mail frees space as it goes.
  writeFileSync(
    config,
    deliveryConfigYaml(`routes: [{ domain: "*", host: 127.0.0.1, port: ${sink.port} }]
delivery: { retry: [1s] }
spool: { segment_size: 256KB, min_free: 3MB, reserve: 512KB }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: pp, workers: 2 });
  expect((await fetch(`${mta.adminUrl}/queue/pause`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);

  const sessions = await Promise.all(Array.from({ length: 4 }, (_, i) => injectUntilRefused(mta!.smtpPort, i)));
  const ids = new Map<string, string>(); // token -> queue id
  for (const s of sessions) {
    expect(s.refusal.code).toBe(452);
    expect(s.refusal.text).toMatch(/^4\.3\.1 /);
    for (const [token, id] of s.accepted) ids.set(token, id);
  }
  expect(ids.size).toBeGreaterThan(1000);

  // Nothing to free: something else takes every block the MTA left.
  fillVolume(filler); // every free block, as another writer on a shared disk would
  // Intake stays refused while the volume is below min_free.
  expect((await probe(mta.smtpPort, 'probe-full')).code).toBe(452);

  expect((await fetch(`${mta.adminUrl}/queue/resume`, { method: 'POST', headers: ADMIN_AUTH })).status).toBe(200);
  const attempts = join(pp, 'log', 'events');
  const delivered = (): Map<string, number> => {
    const n = new Map<string, number>();
    for (const e of readAttempts<{ message_id: string; status: string }>(attempts)) if (e.status === 'delivered') n.set(e.message_id, (n.get(e.message_id) ?? 0) + 1);
    return n;
  };
  await waitUntil(() => sink!.messages() >= ids.size && delivered().size >= ids.size, 120_000, () => `sink ${sink!.messages()}, logged ${delivered().size} of ${ids.size}\n${mta!.log().slice(-3000)}`);
  process.stdout.write(`disk full: ${ids.size} acknowledged, ${sink.messages()} at the sink\n`);

  // Exactly once at the sink, and one "delivered" line per message in the attempt log.
  const copies = new Map<string, number>();
  for (const d of await sink.readDumps()) {
    const token = /^Subject: (\S+)$/m.exec(d.content)![1];
    copies.set(token, (copies.get(token) ?? 0) + 1);
  }
  expect([...ids.keys()].filter((t) => copies.get(t) !== 1)).toEqual([]);
  expect(copies.size).toBe(ids.size);
  const logged = delivered();
  expect([...ids.values()].filter((id) => logged.get(id) !== 1)).toEqual([]);

  // Nothing else was freed (the filler stays), but the delivered mail's
  // segments were: intake resumes by itself, /readyz with it, and new mail goes once.
  // Not at once: what frees the space is the spool's reclaim of delivered segments (the active one rolls first) and the
  // event log's closed files, each on its own schedule; CI saw this take longer than 15 s with other suites running.
  // The state says where the volume stands if it never comes.
  await waitUntil(() => fetch(`${mta!.adminUrl}/readyz`).then((r) => r.ok, () => false), 90_000, () => {
    const fs = statfsSync(pp);
    return `not ready: ${fs.bavail * fs.bsize} bytes free (min_free 3 MB)\n${mta!.log().slice(-2000)}`;
  });
  const again = await probe(mta.smtpPort, 'probe-after');
  expect(again.code).toBe(250);
  await waitUntil(() => sink!.messages() === ids.size + 1, 15_000, () => `sink ${sink!.messages()}`);
}, 240_000);
