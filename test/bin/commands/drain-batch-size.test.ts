// `volley drain` into a real destination MTA whose drain.max_batch_bytes is
// smaller than the drain's batches (the drain packs up to 8MB, plus one
// message of up to smtp.max_message_size, 25MB by default, against a 32MB
// default limit): a 413 says "this batch is too large", not "this destination
// never takes anything"; only a message too large alone is refused (it stays
// queued at the source). Real processes on 127.0.0.1: the bundled `volley mta`
// as source and destination, the bundled `volley drain`.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpoolPartition } from '../../../runtime/mta/spool/partition';
import { ADMIN_AUTH, ADMIN_TOKEN, deliveryConfigYaml } from '../../helpers/config';
import { startMta, VOLLEY, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { newSecret } from '../../helpers/proxy-fixtures';
import { inject, message } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-drain-batch-');
const mtas: MtaProcess[] = [];
afterAll(async () => {
  for (const m of mtas) await m.crash();
});

async function queued(m: MtaProcess): Promise<number> {
  return ((await (await fetch(`${m.adminUrl}/queue`, { headers: ADMIN_AUTH })).json()) as { queued: number }).queued;
}

test('batches larger than the destination\'s max_batch_bytes are split and every message that fits moves; one message over it alone stays queued here (exit 12, named), instead of the destination being left out for good with nothing moved', async () => {
  const secretFile = join(dir, 'drain.secret');
  writeFileSync(secretFile, newSecret());
  const closed = await getFreePort();
  // Source: everything waits an hour for a closed port.
  mkdirSync(join(dir, 'src'));
  const srcConfig = join(dir, 'src', 'volley.yaml');
  writeFileSync(srcConfig, deliveryConfigYaml(`routes:\n  - { domain: "*", host: 127.0.0.1, port: ${closed} }\ndelivery:\n  retry: [1h]\n`));
  const src = await startMta({ configPath: srcConfig, persistentPath: join(dir, 'src', 'pp'), workers: 1 });
  mtas.push(src);
  // Destination: takes drained batches of at most 1MB.
  mkdirSync(join(dir, 'dst'));
  const dstConfig = join(dir, 'dst', 'volley.yaml');
  const drainPort = await getFreePort();
  writeFileSync(
    dstConfig,
    deliveryConfigYaml(`routes:\n  - { domain: "*", host: 127.0.0.1, port: ${closed} }\ndelivery:\n  retry: [1h]\n` +
      `drain:\n  listen: { address: 127.0.0.1, port: ${drainPort} }\n  secret_file: ${secretFile}\n  accept_from: [127.0.0.0/8]\n  max_batch_bytes: 1MB\n`),
  );
  const dst = await startMta({ configPath: dstConfig, persistentPath: join(dir, 'dst', 'pp'), workers: 1 });
  mtas.push(dst);

  // Ten messages of ~300KB: one batch of ~3MB at the drain's default batch size (one sender, so the batch is whole).
  const line = `${'x'.repeat(998)}\r\n`;
  for (let i = 0; i < 10; i++) await inject(src.smtpPort, 'a@example.test', [`r${i}@far.test`], message(`m${i}`, line.repeat(300)));
  // And one of ~1.2MB: over the limit even alone.
  const big = await inject(src.smtpPort, 'a@example.test', ['big@far.test'], message('big', line.repeat(1200)));
  expect(await queued(src)).toBe(11);

  const proc = spawn(
    process.execPath,
    [VOLLEY, 'drain', `127.0.0.1:${drainPort}`, '--config', srcConfig, '--persistent-path', join(dir, 'src', 'pp'), '--admin', src.adminAddress, '--secret-file', secretFile, '--insecure-tls', '--json', '--retry-delay', '100ms', '--concurrency', '1'],
    { env: { ...process.env, VOLLEY_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdout!.resume();
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  expect(code).toBe(12);
  expect(stderr).toContain(`refused message ${big}`);
  expect(await queued(dst)).toBe(10);
  // The big one is still queued here (the drain left the MTA stopped: read its spool).
  const part = await SpoolPartition.open({ dir: join(dir, 'src', 'pp', 'spool', 'p000') });
  expect([...part.entries()].map((e) => e.id)).toEqual([big]);
  await part.close();
}, 180_000);
