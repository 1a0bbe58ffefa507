// What the mirror replicates and how: append-only files by offset, the rest
// whole, and the node-local files (its own state, the MTA's lock, the spool's
// disk reserve, temporary files) never.
import { classify } from '../../../runtime/mirror/files';

describe('classify', () => {
  it.each([
    ['spool/p0/000000000001.seg', 'append'],
    ['log/events/w0.20261205T000000000Z-000001.jsonl', 'append'],
    ['events/dead-letter/hook.jsonl', 'append'],
    ['node-id', 'whole'],
    ['drain/seen.log', 'whole'],
    ['log/events/cursors/s3.json', 'whole'],
    ['tls/self-signed.key', 'whole'],
  ])('%s is replicated (%s)', (path, kind) => {
    expect(classify(path)).toBe(kind);
  });

  it.each(['mirror/state.json', 'mta.lock', 'reserve/w0', 'log/events/.cursor.123.tmp', 'drain/.1733.seen.tmp', 'spool/p0/x.mirror.tmp'])('%s is never replicated', (path) => {
    expect(classify(path)).toBeUndefined();
  });
});
