import { MinHeap } from '../../../../../runtime/mta/delivery/scheduler/heap';

test('pops in key order, whether built one by one or all at once', () => {
  const keys = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 2003);
  const one = new MinHeap<number>();
  for (const k of keys) one.push(k, k);
  const all = new MinHeap<number>();
  all.pushAll(keys.slice(0, 1000), (k) => k);
  for (const k of keys.slice(1000)) all.push(k, k);
  const sorted = [...keys].sort((a, b) => a - b);
  for (const heap of [one, all]) {
    const out: number[] = [];
    while (heap.size > 0) out.push(heap.pop()!);
    expect(out).toEqual(sorted);
  }
});
