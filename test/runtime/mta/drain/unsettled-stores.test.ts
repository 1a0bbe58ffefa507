import { UnsettledStores } from '../../../../runtime/mta/drain/unsettled-stores';

test('asked by message id across requests; a request settled or its worker restarted takes its ids out', () => {
  const u = new UnsettledStores();
  u.set(1, 0, ['m1', 'm2']);
  u.set(2, 1, ['m3']);
  expect(['m1', 'm2', 'm3', 'm4'].map((id) => u.has(id))).toEqual([true, true, true, false]);
  // A late answer leaves only what is still unknown.
  u.set(1, 0, ['m2']);
  expect([u.has('m1'), u.has('m2')]).toEqual([false, true]);
  u.forgetWorker(1);
  expect(u.has('m3')).toBe(false);
  u.delete(1);
  expect(u.has('m2')).toBe(false);
  expect(u.get(1)).toBeUndefined();
});
