// Quarantine of a returning primary's unreplicated tail. First the guard on
// its own (files on disk, no processes): what a catch-up would cut, rewrite
// or delete is stashed first, and once caught up only the bytes past the
// common prefix (from the record or line that starts it) are kept, with the
// message ids of their spool records. Then the drill with real processes: an
// async pair, the link cut by relays, the old primary accepting more, the
// secondary promoted and accepting mail, the link back: the old primary is
// demoted, catches up byte-identical, and its quarantine names exactly the
// messages it acknowledged after the cut.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { applyBatch } from '../../../runtime/mirror/apply';
import { fileOnPromotion, guardCatchUp, markForQuarantine, quarantineDir, quarantineSummary, readMarker, type QuarantineReport } from '../../../runtime/mirror/quarantine';
import { createLogger } from '../../../runtime/shared/log';
import { RecordType, frame, messagePayload } from '../../../runtime/shared/spool-record';
import { testConfigYaml } from '../../helpers/config';
import { sums, untilBoth, writeMirrorYaml } from '../../helpers/mirror-pair';
import { mirrorCli, startMirror, type MirrorProcess } from '../../helpers/mirror-process';
import { startMta, type MtaProcess } from '../../helpers/mta-process';
import { getFreePort } from '../../helpers/postfix-tools';
import { startFreezableRelay, type FreezableRelay } from '../../helpers/freezable-relay';
import { newSecret, proxyTls } from '../../helpers/proxy-fixtures';
import { smtpSourceWithAcks } from '../../helpers/smtp-source-acks';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-mirror-quarantine-');
const logger = createLogger({ level: 'silent', name: 'test' });

function message(id: string, to: string): Buffer {
  return Buffer.concat(frame(RecordType.Message, messagePayload(JSON.stringify({ id, from: 'a@x.test', to: [to], received: 1, via: 'smtp', size: 5 }), Buffer.from('hello'))));
}

function state(id: string): Buffer {
  return Buffer.concat(frame(RecordType.State, [Buffer.from(JSON.stringify({ id, attempts: 1, next: 2 }))]));
}

function put(root: string, rel: string, data: Buffer): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), data);
}

describe('the guard', () => {
  test('a node that never was primary (nor ran an MTA) is caught up without one', () => {
    const root = join(dir, 'fresh');
    mkdirSync(root);
    expect(guardCatchUp(root, 3, undefined, logger, 0)).toBeUndefined();
  });

  test('what a catch-up cuts, rewrites or deletes is kept from the first record or line that differs, with the message ids it names', async () => {
    const root = join(dir, 'returning');
    const seg = 'spool/p000/000000000001.seg';
    const shared = Buffer.concat([message('m1', 'r1@x.test'), state('m1')]);
    // Its own tail: two messages, and progress on the shared one. The primary's m9 starts with the same header bytes as m2.
    put(root, seg, Buffer.concat([shared, message('m2', 'r2@x.test'), state('m0'), message('m3', 'r3@x.test')]));
    put(root, 'spool/p000/000000000002.seg', message('m4', 'r4@x.test'));
    put(root, 'log/events/a.jsonl', Buffer.from('{"n":1}\n{"n":2}\n{"n":3,"own":true}\n'));
    put(root, 'node-id', Buffer.from('n1\n'));
    markForQuarantine(root, 4, 'test', Date.UTC(2026, 0, 2, 3, 4, 5));
    expect(readMarker(root)).toMatchObject({ epoch: 4, why: 'test' });
    const guard = guardCatchUp(root, 5, undefined, logger, 0)!;
    expect(guard).toBeDefined();
    expect((await quarantineSummary(root)).pending).toBe(true);

    // The batches of the catch-up: the diverged segment copied whole (truncate 0, write), the unknown one deleted, the log cut back to the shared line and rewritten.
    const primarySeg = Buffer.concat([shared, message('m9', 'r9@x.test')]);
    const batches = [
      [{ op: 'truncate' as const, path: seg, size: 0 }],
      [{ op: 'delete' as const, path: 'spool/p000/000000000002.seg' }, { op: 'truncate' as const, path: 'log/events/a.jsonl', size: 10 }, { op: 'replace' as const, path: 'node-id', len: 3, sha256: 'x' }],
    ];
    for (const ops of batches) {
      await guard.protect(ops);
      // What applyBatch would do next, by hand.
      for (const op of ops) {
        if (op.op === 'truncate' && op.size === 0) put(root, op.path, primarySeg);
        if (op.op === 'truncate' && op.size > 0) put(root, op.path, Buffer.from('{"n":1}\n{"n":2}\n{"n":3,"new":1}\n'));
      }
    }
    // The same file again later in the session: its original is already safe, not stashed twice.
    await guard.protect([{ op: 'truncate', path: seg, size: 0 }]);

    const report = (await guard.finish(5, Date.UTC(2026, 0, 2, 3, 4, 6)))!;
    expect(report.dir).toBe(join(quarantineDir(root), '4-20260102T030406Z'));
    expect(report.messages.sort()).toEqual(['m2', 'm3', 'm4']);
    expect(report.updated).toEqual(['m0']);
    const byPath = new Map(report.files.map((f) => [f.path, f]));
    expect(byPath.get(seg)).toMatchObject({ from: shared.length, whole_file: false, messages: ['m2', 'm3'], updated: ['m0'], unparsed_bytes: 0 });
    expect(byPath.get('spool/p000/000000000002.seg')).toMatchObject({ from: 0, whole_file: true, messages: ['m4'] });
    expect(byPath.get('log/events/a.jsonl')).toMatchObject({ from: 16, whole_file: false });
    expect(byPath.has('node-id')).toBe(false); // small state files are the primary's: not quarantined
    // The bytes themselves, at the same relative paths, and the report beside them.
    expect(readFileSync(join(report.dir, seg)).equals(Buffer.concat([message('m2', 'r2@x.test'), state('m0'), message('m3', 'r3@x.test')]))).toBe(true);
    expect(readFileSync(join(report.dir, 'log/events/a.jsonl'), 'utf8')).toBe('{"n":3,"own":true}\n');
    expect((JSON.parse(readFileSync(join(report.dir, 'quarantine.json'), 'utf8')) as QuarantineReport).messages.sort()).toEqual(['m2', 'm3', 'm4']);
    // Filed: the mark and the stash are gone, the status counts it.
    expect(readMarker(root)).toBeUndefined();
    expect(existsSync(join(quarantineDir(root), 'pending'))).toBe(false);
    expect(await quarantineSummary(root)).toMatchObject({ pending: false, messages: 3, reports: [{ dir: report.dir, messages: 3, updated: 1 }] });
    expect(guardCatchUp(root, 5, undefined, logger, 0)).toBeUndefined();
  });

  test('a small file only this node holds (a report the inbound listener answered 250 for) is set aside and filed whole, not deleted', async () => {
    const root = join(dir, 'own-small-file');
    const eml = 'inbound/unmatched/20260102T030405000Z-0a0b0c0d0e0f.eml';
    const raw = Buffer.from('From: postmaster@isp.test\r\nSubject: report\r\n\r\nnot one we could match\r\n');
    put(root, eml, raw);
    put(root, 'node-id', Buffer.from('n1\n'));
    markForQuarantine(root, 2, 'test', 0);
    const guard = guardCatchUp(root, 3, undefined, logger, 0)!;
    // The primary has no such file: its catch-up deletes it.
    const ops = [{ op: 'delete' as const, path: eml }];
    await guard.protect(ops);
    await applyBatch(root, ops);
    const report = (await guard.finish(3, Date.UTC(2026, 0, 2, 3, 4, 6)))!;
    expect(report).toBeDefined();
    expect(report.files).toEqual([expect.objectContaining({ path: eml, from: 0, bytes: raw.length, whole_file: true })]);
    expect(readFileSync(join(report.dir, eml)).equals(raw)).toBe(true);
  });

  test('a file the primary extends where this node stopped holds nothing of its own: no report', async () => {
    const root = join(dir, 'prefix');
    const seg = 'spool/p000/000000000001.seg';
    put(root, seg, message('m1', 'r1@x.test'));
    markForQuarantine(root, 1, 'test', 0);
    const guard = guardCatchUp(root, 2, undefined, logger, 0)!;
    await guard.protect([{ op: 'truncate', path: seg, size: 0 }]);
    put(root, seg, Buffer.concat([message('m1', 'r1@x.test'), message('m2', 'r2@x.test')]));
    expect(await guard.finish(2, 0)).toBeUndefined();
    expect(readMarker(root)).toBeUndefined();
    expect(readdirSync(quarantineDir(root))).toEqual([]);
  });

  test('a node promoted before its catch-up finished files what it set aside so far, and is unmarked', async () => {
    const root = join(dir, 'promoted-mid-catch-up');
    const seg = 'spool/p000/000000000001.seg';
    put(root, seg, Buffer.concat([message('m1', 'r1@x.test'), message('m2', 'r2@x.test')]));
    markForQuarantine(root, 1, 'test', 0);
    const guard = guardCatchUp(root, 2, undefined, logger, 0)!;
    await guard.protect([{ op: 'truncate', path: seg, size: 0 }]);
    put(root, seg, message('m1', 'r1@x.test')); // the catch-up got this far
    const report = (await fileOnPromotion(root, 3, logger, 0))!;
    expect(report).toMatchObject({ epoch: 1, primary_epoch: 3, messages: ['m2'] });
    expect(readMarker(root)).toBeUndefined();
    expect(await fileOnPromotion(root, 3, logger, 0)).toBeUndefined();
  });

  test('an MTA\'s lock left on a secondary marks it (that MTA may have accepted mail), once', () => {
    const root = join(dir, 'stale-lock');
    mkdirSync(root);
    writeFileSync(join(root, 'mta.lock'), '4242\n');
    expect(guardCatchUp(root, 2, 4242, logger, 0)).toBeDefined();
    expect(readMarker(root)?.why).toContain('pid 4242');
    expect(existsSync(join(root, 'mta.lock'))).toBe(false);
  });
});

const mtas: MtaProcess[] = [];
const mirrors: MirrorProcess[] = [];
const relays: FreezableRelay[] = [];

afterAll(async () => {
  for (const m of mtas) await m.crash();
  for (const m of mirrors) await m.crash();
  for (const r of relays) await r.close();
});

test('the old primary returns after a forced promotion: demoted, caught up byte-identical, and its unreplicated tail quarantined with exactly the message ids it acknowledged after the cut', async () => {
  const tls = await proxyTls(join(dir, 'tls'));
  writeFileSync(join(dir, 'mirror.secret'), newSecret());
  const ppA = join(dir, 'node-a');
  const ppB = join(dir, 'node-b');
  mkdirSync(ppA);
  mkdirSync(ppB);
  const port = { a: await getFreePort(), b: await getFreePort(), adminA: await getFreePort(), adminB: await getFreePort() };
  const adminA = `127.0.0.1:${port.adminA}`;
  const adminB = `127.0.0.1:${port.adminB}`;
  // Each node reaches the other through a relay the test can cut: the partition.
  const toB = await startFreezableRelay({ host: '127.0.0.1', port: port.b });
  const toA = await startFreezableRelay({ host: '127.0.0.1', port: port.a });
  relays.push(toB, toA);
  const cfgA = writeMirrorYaml(dir, 'a', { pp: ppA, self: port.a, peer: toB.port, admin: adminA, tls });
  const cfgB = writeMirrorYaml(dir, 'b', { pp: ppB, self: port.b, peer: toA.port, admin: adminB, tls });
  const mtaYaml = join(dir, 'mta.yaml');
  writeFileSync(mtaYaml, testConfigYaml({ sinkPort: await getFreePort(), relayFrom: ['127.0.0.0/8'] })); // deliveries defer: the queue stays

  const mtaA = await startMta({ configPath: mtaYaml, persistentPath: ppA, workers: 2 });
  mtas.push(mtaA);
  const mirrorA = await startMirror(cfgA, adminA);
  mirrors.push(mirrorA);
  expect((await mirrorCli(['promote', '--force', '--admin', adminA])).code).toBe(0);
  const mirrorB = await startMirror(cfgB, adminB);
  mirrors.push(mirrorB);

  const before = await smtpSourceWithAcks({ port: mtaA.smtpPort, sessions: 4, messages: 60, domain: 'before.test' });
  await untilBoth(mirrors, (p, s) => p.lag_bytes === 0 && p.caught_up === true && s.caught_up === true, adminA, adminB, 'caught up before the cut');
  // A fresh secondary's first catch-up sets nothing aside.
  expect(existsSync(quarantineDir(ppB))).toBe(false);

  toB.freeze();
  toA.freeze();
  const after = await smtpSourceWithAcks({ port: mtaA.smtpPort, sessions: 4, messages: 40, domain: 'after.test' });
  expect(after.acked.length).toBe(40);
  expect(after.queuedAs?.size).toBe(40);

  expect((await mirrorCli(['promote', '--force', '--admin', adminB])).stdout).toContain('primary of epoch 2');
  const mtaB = await startMta({ configPath: mtaYaml, persistentPath: ppB, workers: 2 });
  mtas.push(mtaB);
  const onB = await smtpSourceWithAcks({ port: mtaB.smtpPort, sessions: 4, messages: 30, domain: 'new-primary.test' });
  expect(onB.acked.length).toBe(30);

  // The link comes back: node A meets epoch 2, stops its MTA and catches up as B's secondary.
  const aExit = new Promise<number | null>((r) => (mtaA.proc.exitCode !== null ? r(mtaA.proc.exitCode) : mtaA.proc.once('exit', (code) => r(code))));
  toB.thaw();
  toA.thaw();
  expect(await aExit).toBe(0);
  const [, a] = await untilBoth(
    mirrors,
    (p, s) => p.role === 'primary' && s.role === 'secondary' && s.epoch === 2 && s.caught_up === true && p.lag_bytes === 0 && (s.quarantine as { pending?: boolean } | undefined)?.pending !== true,
    adminB,
    adminA,
    'the old primary demoted, caught up and its quarantine filed',
  );
  expect(sums(ppA)).toEqual(sums(ppB));

  const reports = readdirSync(quarantineDir(ppA));
  expect(reports).toHaveLength(1);
  expect(reports[0]).toMatch(/^1-\d{8}T\d{6}Z$/); // held under epoch 1
  const report = JSON.parse(readFileSync(join(quarantineDir(ppA), reports[0], 'quarantine.json'), 'utf8')) as QuarantineReport;
  expect(report.messages.sort()).toEqual([...after.queuedAs!.values()].sort());
  // Nothing acknowledged before the cut, nor by the new primary, is in it.
  for (const t of [before, onB]) for (const id of t.queuedAs!.values()) expect(report.messages).not.toContain(id);
  // The quarantined segments hold those messages' records, and the primary's copy does not.
  for (const f of report.files.filter((x) => x.path.endsWith('.seg'))) {
    const bytes = readFileSync(join(quarantineDir(ppA), reports[0], f.path));
    for (const id of f.messages) expect(bytes.includes(id)).toBe(true);
    const primary = existsSync(join(ppB, f.path)) ? readFileSync(join(ppB, f.path)) : Buffer.alloc(0);
    for (const id of f.messages) expect(primary.includes(id)).toBe(false);
  }
  // Reported in the status, human and JSON.
  expect(a.quarantine).toMatchObject({ pending: false, messages: 40 });
  const human = await mirrorCli(['status', '--admin', adminA]);
  expect(human.stdout).toMatch(/^quarantine\s+40 messages never received by the primary, in 1 report\(s\); last: .*quarantine\.json$/m);
  expect(mirrorA.log()).toContain('quarantined what this node alone held');
  expect(await (await fetch(`http://${adminA}/metrics`)).text()).toMatch(/^volley_mirror_quarantined_messages 40$/m);
  // The new primary (never a primary before it was promoted) set nothing aside.
  expect(existsSync(quarantineDir(ppB))).toBe(false);
}, 300_000);
