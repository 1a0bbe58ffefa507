import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readDay, storedDays, TlsRptStore } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-store';
import type { ReportedPolicy } from '../../../../../runtime/mta/delivery/tls-policy/resolver';
import { tempDir } from '../../../../helpers/tmp';

const sts: ReportedPolicy = { type: 'sts', domain: 'a.test', strings: ['version: STSv1', 'mode: enforce', 'mx: mx.a.test', 'max_age: 86400'], mxHost: ['mx.a.test'] };
const none: ReportedPolicy = { type: 'no-policy-found', domain: 'b.test', strings: [] };

const dir = tempDir();

test('counts per UTC day and policy survive a restart; every worker is summed; a torn last line is skipped', async () => {
  let clock = Date.parse('2026-12-04T23:59:59Z');
  const w0 = new TlsRptStore({ dir, worker: 'w0', now: () => clock, flushMs: 0 });
  w0.add({ policy: sts, ok: true });
  w0.add({ policy: sts, ok: false, failure: { resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', reasonCode: 'not in policy' } });
  await w0.flush();
  clock += 1000; // next UTC day
  w0.add({ policy: sts, ok: true });
  w0.add({ policy: none, ok: true });
  await w0.close();

  // "Restart": a new store, and another worker, on the same directory.
  const w0again = new TlsRptStore({ dir, worker: 'w0', now: () => clock, flushMs: 0 });
  const w1 = new TlsRptStore({ dir, worker: 'w1', now: () => clock, flushMs: 0 });
  w0again.add({ policy: sts, ok: false, failure: { resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', reasonCode: 'not in policy' } });
  w1.add({ policy: sts, ok: false, failure: { resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', reasonCode: 'not in policy' } });
  await Promise.all([w0again.close(), w1.close()]);
  appendFileSync(join(dir, 'w1-2026-12-05.jsonl'), '{"day":"2026-12-05","policy":'); // a crash mid-append

  expect(storedDays(dir)).toEqual(['2026-12-04', '2026-12-05']);
  expect(readDay(dir, '2026-12-04').get('a.test')).toEqual([{ policy: sts, ok: 1, failed: 1, failures: [{ resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', reasonCode: 'not in policy', count: 1 }] }]);
  const day2 = readDay(dir, '2026-12-05');
  expect(day2.get('a.test')).toEqual([{ policy: sts, ok: 1, failed: 2, failures: [{ resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', reasonCode: 'not in policy', count: 2 }] }]);
  expect(day2.get('b.test')).toEqual([{ policy: none, ok: 1, failed: 0, failures: [] }]);
  expect(readdirSync(dir).sort()).toEqual(['w0-2026-12-04.jsonl', 'w0-2026-12-05.jsonl', 'w1-2026-12-05.jsonl']);
});
