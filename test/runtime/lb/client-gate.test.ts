// ClientGate: a worker at a client's node-wide limit still admits what it
// closed itself since its last report, and only that; below the limit (or
// never told) it leaves the count to its own ClientLimits.
import { ClientGate } from '../../../runtime/lb/client-gate';

test('at the limit, a session this worker closed since its report is free again here; one another worker closed waits for the primary', () => {
  const gate = new ClientGate();
  // This worker holds 3 of the client's 4 (limit 4), reported; the primary says the node is at 4.
  gate.sent([['192.0.2.1', 3]]);
  gate.told([{ address: '192.0.2.1', atLimit: true, open: 4 }]);
  expect(gate.full('192.0.2.1', 3, 4)).toBe(true);
  // It closed one: the next session from the client is admitted here at once (was refused until the next report).
  expect(gate.full('192.0.2.1', 2, 4)).toBe(false);
  // Another worker's close is not seen here: with its own 3 again, this worker refuses.
  expect(gate.full('192.0.2.1', 3, 4)).toBe(true);
  // The primary's next word: below the limit.
  gate.told([{ address: '192.0.2.1', atLimit: false, open: 3 }]);
  expect(gate.full('192.0.2.1', 3, 4)).toBe(false);
});

test('a client the primary never said is at the limit is never full here; a new report moves this worker\'s share', () => {
  const gate = new ClientGate();
  expect(gate.full('192.0.2.9', 100, 4)).toBe(false);
  gate.told([{ address: '192.0.2.9', atLimit: true, open: 4 }]);
  // Nothing reported by this worker: all 4 are others'.
  expect(gate.full('192.0.2.9', 0, 4)).toBe(true);
  // Once it reported 1 of the 4: the others hold 3, so one here is free only while it holds none.
  gate.sent([['192.0.2.9', 1]]);
  expect(gate.full('192.0.2.9', 0, 4)).toBe(false);
  expect(gate.full('192.0.2.9', 1, 4)).toBe(true);
});
