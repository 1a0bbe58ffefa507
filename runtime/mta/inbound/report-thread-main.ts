// The report thread's side (report-thread.ts): takes one report at a time
// from the primary, parses it with parseReport and answers with the result
// as plain data. Run by the bundle when its workerData names REPORT_THREAD.

import { parentPort } from 'node:worker_threads';
import { parseReport } from './report';
import type { ThreadReply, ThreadRequest } from './report-thread';

export function serveReportParses(): void {
  const port = parentPort;
  if (!port) throw new Error('serveReportParses runs in a worker thread');
  const answer = (m: ThreadReply): void => port.postMessage(m);
  port.on('message', (m: ThreadRequest) => {
    answer({ kind: 'started' });
    const raw = Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength);
    parseReport(raw, m.limits).then(
      ({ original, ...report }) => answer({ kind: 'done', report, original: original?.entries() }),
      (err: unknown) => answer({ kind: 'failed', message: err instanceof Error ? err.message : String(err) }),
    );
  });
}
