// ClientBook: the node's per-client count is the sum of what the workers
// last reported; a client is at the limit (no worker admits it) when that sum
// reaches --max-connections-per-client and only a change is told; a worker
// that exits gives back what it held; a reload moves the limit for all.
import { ClientBook } from '../../../runtime/lb/client-book';

test('the workers\' reports add up to the node\'s count: at the limit every worker is told once, below it again once', () => {
  const book = new ClientBook(4);
  expect(book.report(1, [['192.0.2.1', 3]])).toEqual([]);
  // A report names a worker's count now, not a difference: the same count again changes nothing.
  expect(book.report(1, [['192.0.2.1', 3]])).toEqual([]);
  expect(book.report(2, [['192.0.2.1', 1], ['192.0.2.2', 1]])).toEqual([{ address: '192.0.2.1', atLimit: true, open: 4 }]);
  expect(book.open('192.0.2.1')).toBe(4);
  expect(book.report(2, [['192.0.2.1', 1]])).toEqual([]);
  // Still at the limit with another count: told, so a worker admits on the count it reported.
  expect(book.report(2, [['192.0.2.1', 2]])).toEqual([{ address: '192.0.2.1', atLimit: true, open: 5 }]);
  expect(book.report(1, [['192.0.2.1', 1]])).toEqual([{ address: '192.0.2.1', atLimit: false, open: 3 }]);
  expect(book.report(2, [['192.0.2.1', 1]])).toEqual([]);
  expect(book.report(2, [['192.0.2.1', 0]])).toEqual([]);
  expect(book.open('192.0.2.1')).toBe(1);
  expect(book.open('192.0.2.2')).toBe(1);
});

test('a worker that exits gives back what it held; a worker that starts learns who is at the limit', () => {
  const book = new ClientBook(2);
  book.report(1, [['192.0.2.1', 1]]);
  expect(book.report(2, [['192.0.2.1', 1]])).toEqual([{ address: '192.0.2.1', atLimit: true, open: 2 }]);
  expect(book.limited()).toEqual([{ address: '192.0.2.1', atLimit: true, open: 2 }]);
  expect(book.forgetWorker(1)).toEqual([{ address: '192.0.2.1', atLimit: false, open: 1 }]);
  expect(book.limited()).toEqual([]);
  expect(book.open('192.0.2.1')).toBe(1);
  // Nothing more to give back for it.
  expect(book.forgetWorker(1)).toEqual([]);
});

test('a reload moves the limit for clients open now: lower puts them at it, higher frees them', () => {
  const book = new ClientBook(3);
  book.report(1, [['192.0.2.1', 2]]);
  expect(book.setLimit(2)).toEqual([{ address: '192.0.2.1', atLimit: true, open: 2 }]);
  expect(book.setLimit(5)).toEqual([{ address: '192.0.2.1', atLimit: false, open: 2 }]);
});
