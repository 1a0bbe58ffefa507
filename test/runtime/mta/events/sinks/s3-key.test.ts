// The bucket layout: which day a file is filed under, and which names can be part of a key.
import { objectKey, startFromName } from '../../../../../runtime/mta/events/sinks/s3-key';

test('the start time is read from the event log\'s rotated names and compact stamps; anything else is undefined', () => {
  expect(startFromName('/p/log/events/w0.2026-12-05T03-45-00-123Z.jsonl')).toEqual(new Date(Date.UTC(2026, 11, 5, 3, 45)));
  expect(startFromName('archive.20261231T235959Z.sqlite')).toEqual(new Date(Date.UTC(2026, 11, 31, 23, 59)));
  // The event log's `<producer>.<UTC stamp>-<seq>.jsonl` and the SQLite sink's `<name>.<UTC stamp>.sqlite`.
  expect(startFromName('/p/log/events/primary.20261205T034319123Z-000042.jsonl')).toEqual(new Date(Date.UTC(2026, 11, 5, 3, 43)));
  expect(startFromName('/p/events/sqlite/acct/acct.20261205T000001000Z.sqlite')).toEqual(new Date(Date.UTC(2026, 11, 5, 0, 0)));
  expect(startFromName('primary.log')).toBeUndefined();
  expect(startFromName('w0.2026-02-31T00-00-00-000Z.jsonl')).toBeUndefined();
  expect(startFromName('w0.2026-13-01T00-00-00-000Z.jsonl')).toBeUndefined();
  // A run of digits that is not a date-time (a sequence number) is not read as one.
  expect(startFromName('w0.1234567890.jsonl')).toBeUndefined();
});

test('keys are <prefix>/<env>/<node>/<kind>/yyyy/mm/dd/<file>[.gz], dated in UTC; no prefix means none', () => {
  const start = new Date(Date.UTC(2026, 0, 2, 23, 30));
  expect(objectKey({ prefix: 'mta', env: 'prod', node: 'prod-mta-us-east-1a-1', kind: 'events', file: '/x/w0.jsonl', start, gzip: true })).toBe('mta/prod/prod-mta-us-east-1a-1/events/2026/01/02/w0.jsonl.gz');
  expect(objectKey({ prefix: '', env: 'dev', node: 'n1', kind: 'sqlite', file: 'a.sqlite', start, gzip: false })).toBe('dev/n1/sqlite/2026/01/02/a.sqlite');
  expect(objectKey({ prefix: 'a/b', env: 'dev', node: 'n1', kind: 'sqlite', file: 'a.sqlite', start, gzip: false })).toBe('a/b/dev/n1/sqlite/2026/01/02/a.sqlite');
});

test('an environment or node id that would change the key\'s shape is refused with a code', () => {
  const start = new Date();
  expect(() => objectKey({ prefix: '', env: 'prod/../x', node: 'n', kind: 'events', file: 'f', start, gzip: true })).toThrow(expect.objectContaining({ code: 'ES3KEY' }));
  expect(() => objectKey({ prefix: '', env: '', node: 'n', kind: 'events', file: 'f', start, gzip: true })).toThrow(/environment ""/);
  expect(() => objectKey({ prefix: '', env: 'prod', node: 'a b', kind: 'events', file: 'f', start, gzip: true })).toThrow(/node id "a b"/);
});
