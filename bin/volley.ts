// The bundle's entry (bin/build.mjs): the `volley` CLI (bin/cli.ts), or, in
// a worker thread the MTA started to parse inbound reports, that thread's
// loop (runtime/mta/inbound/report-thread.ts). Both are loaded by import() so
// the bundle initialises only the one it runs: the thread does not pay for
// every verb's modules.
import { isMainThread, workerData } from 'node:worker_threads';
import { REPORT_THREAD } from '../runtime/mta/inbound/report-thread';

if (!isMainThread && (workerData as { volley?: unknown } | null)?.volley === REPORT_THREAD) {
  void import('../runtime/mta/inbound/report-thread-main').then((m) => m.serveReportParses());
} else {
  void import('./cli');
}
