// The lag the primary tells its secondary: carried by the batch that goes out
// anyway, a status frame of its own only when idle and changed, so a busy
// sync link carries no frame per batch for it.
import { LagReport, lagOf } from '../../../runtime/mirror/lag-report';

test('a batch carries the lag; no status frame is due for a figure a batch told', () => {
  const r = new LagReport();
  expect(r.forBatch(4096, 0.01)).toEqual({ lag_bytes: 4096, lag_seconds: 0.01 });
  // Idle right after, same figure: the secondary knows it.
  expect(r.forIdle(4096, 0.01)).toBeUndefined();
  // Batch after batch under load: the lag changes every time, and still no status frame.
  for (let i = 1; i <= 5; i++) expect(r.forBatch(4096 * i, 0.01 * i)).toEqual({ lag_bytes: 4096 * i, lag_seconds: 0.01 * i });
});

test('idle: a status frame when the figure changed (to tenths of a second), none when it did not', () => {
  const r = new LagReport();
  expect(r.forIdle(0, 0)).toEqual({ lag_bytes: 0, lag_seconds: 0 }); // the first word on a new link
  expect(r.forIdle(0, 0)).toBeUndefined();
  r.forBatch(100, 0);
  expect(r.forIdle(0, 0)).toEqual({ lag_bytes: 0, lag_seconds: 0 }); // the batch's ack brought it to 0: told
  expect(r.forIdle(500, 1.21)).toEqual({ lag_bytes: 500, lag_seconds: 1.21 });
  expect(r.forIdle(500, 1.24)).toBeUndefined();
  expect(r.forIdle(500, 1.3)).toEqual({ lag_bytes: 500, lag_seconds: 1.3 });
});

test('the secondary reads the lag from a status frame or a batch header, and nothing from a batch without it (an older primary)', () => {
  expect(lagOf({ t: 'status', lag_bytes: 7, lag_seconds: 0.5 })).toEqual({ bytes: 7, seconds: 0.5 });
  expect(lagOf({ t: 'batch', seq: 1, ops: [], lag_bytes: 7 })).toEqual({ bytes: 7, seconds: 0 });
  expect(lagOf({ t: 'batch', seq: 1, ops: [] })).toBeUndefined();
});
