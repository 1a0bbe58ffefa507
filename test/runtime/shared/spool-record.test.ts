// The spool's record framing as the mirror reads it: every valid record in a
// buffer, a bad stretch skipped to the next record (nothing after it hidden),
// and a torn last record counted, not taken.
import { RecordType, decodeRecords, frame, messagePayload, splitMessagePayload } from '../../../runtime/shared/spool-record';

const record = (type: RecordType, payload: Buffer[]): Buffer => Buffer.concat(frame(type, payload));

test('decodes every valid record, skipping a corrupt one and counting a torn tail', () => {
  const m1 = record(RecordType.Message, messagePayload('{"id":"m1"}', Buffer.from('body one')));
  const bad = record(RecordType.State, [Buffer.from('{"id":"x"}')]);
  bad[bad.length - 1] ^= 0xff; // its CRC no longer matches
  const done = record(RecordType.Done, [Buffer.from('{"id":"m1","reason":"delivered"}')]);
  const torn = record(RecordType.Message, messagePayload('{"id":"m2"}', Buffer.from('body two'))).subarray(0, 20);
  const { records, skipped } = decodeRecords(Buffer.concat([m1, bad, done, torn]));
  expect(records.map((r) => [r.type, r.offset])).toEqual([
    [RecordType.Message, 0],
    [RecordType.Done, m1.length + bad.length],
  ]);
  expect(splitMessagePayload(records[0].payload)).toEqual({ envelope: '{"id":"m1"}', body: Buffer.from('body one') });
  expect(JSON.parse(records[1].payload.toString())).toEqual({ id: 'm1', reason: 'delivered' });
  expect(skipped).toBe(bad.length + torn.length);
});

test('bytes that are no record at all are all skipped', () => {
  expect(decodeRecords(Buffer.from('not a spool record'))).toEqual({ records: [], skipped: 18 });
  expect(decodeRecords(Buffer.alloc(0))).toEqual({ records: [], skipped: 0 });
});
