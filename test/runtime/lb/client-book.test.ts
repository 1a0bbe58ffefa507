// ClientBook: the node's per-client count over every worker is exact, a close
// gives one slot back to the worker that held it, and a worker that exits
// gives back every slot it held (its sessions died with it).
import { ClientBook } from '../../../runtime/lb/client-book';

test('the limit is the node\'s, whichever worker asks; a close frees a slot for any worker', () => {
  const book = new ClientBook(3);
  expect([book.tryOpen(0, '192.0.2.1'), book.tryOpen(0, '192.0.2.1'), book.tryOpen(1, '192.0.2.1')]).toEqual([true, true, true]);
  expect(book.tryOpen(1, '192.0.2.1')).toBe(false);
  expect(book.tryOpen(0, '192.0.2.1')).toBe(false);
  // Another client has its own count.
  expect(book.tryOpen(1, '192.0.2.2')).toBe(true);
  book.close(0, '192.0.2.1');
  expect(book.tryOpen(1, '192.0.2.1')).toBe(true);
  expect(book.tryOpen(0, '192.0.2.1')).toBe(false);
});

test('a worker that exits gives back what it held; a late or stray close from it changes nothing', () => {
  const book = new ClientBook(2);
  book.tryOpen(0, '192.0.2.1');
  book.tryOpen(1, '192.0.2.1');
  expect(book.tryOpen(1, '192.0.2.1')).toBe(false);
  book.forgetWorker(0);
  // The stray close of worker 0's session must not free worker 1's.
  book.close(0, '192.0.2.1');
  expect(book.tryOpen(1, '192.0.2.1')).toBe(true);
  expect(book.tryOpen(1, '192.0.2.1')).toBe(false);
});

test('a lower limit (a reload) holds for new sessions; those open stay', () => {
  const book = new ClientBook(3);
  book.tryOpen(0, '192.0.2.1');
  book.tryOpen(1, '192.0.2.1');
  book.setLimit(1);
  expect(book.tryOpen(0, '192.0.2.1')).toBe(false);
  book.close(0, '192.0.2.1');
  book.close(1, '192.0.2.1');
  expect(book.tryOpen(0, '192.0.2.1')).toBe(true);
});
