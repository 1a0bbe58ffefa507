// ReportThread against the built bundle (dist/volley.js, as the MTA runs it):
// a report parses there as it does in-process, and a parse stopped mid-way
// (a crafted report that takes many seconds of CPU) ends with its thread,
// never answers, and the next report gets a fresh thread.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseReport } from '../../../../runtime/mta/inbound/report';
import { ReportThread, THREAD_IDLE_MS } from '../../../../runtime/mta/inbound/report-thread';
import { VolleyError } from '../../../../runtime/shared/errors';
import { VOLLEY } from '../../../helpers/mta-process';
import { waitUntil } from '../../../helpers/proxy-fixtures';
import { ManualTimers } from '../../../helpers/manual-timers';

const fixture = (name: string): Buffer => Buffer.from(readFileSync(join(__dirname, '../../../fixtures/reports', name), 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');

/**
 * One attachment whose Content-Disposition carries n RFC 2231 continuations
 * (filename*0*, filename*1*, ...): mailparser joins them in time quadratic
 * in n, synchronously (20,000 took ~10 s of CPU here in one step).
 */
function slowReport(n: number): Buffer {
  const params = Array.from({ length: n }, (_, i) => `;\r\n filename*${i}*=utf-8''%41%42`).join('');
  return Buffer.from(`From: MAILER-DAEMON@mx.example.net\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment${params}\r\n\r\nx\r\n--b--\r\n`);
}

/** The threads a ReportThread started, and which of them have exited. */
function spawned(): { spawn: (script: string, data: unknown) => Worker; workers: Worker[]; exited: Set<Worker> } {
  const workers: Worker[] = [];
  const exited = new Set<Worker>();
  return {
    workers,
    exited,
    spawn: (script, workerData) => {
      const w = new Worker(script, { workerData });
      workers.push(w);
      w.once('exit', () => exited.add(w));
      return w;
    },
  };
}

const never = new AbortController().signal;

test('a report parsed in the thread reads as it does in-process, the original headers included; the thread is kept for the next', async () => {
  const threads = spawned();
  const thread = new ReportThread(VOLLEY, threads.spawn);
  try {
    for (const name of ['postfix-dsn.eml', 'yahoo-arf.eml']) {
      const raw = fixture(name);
      const there = await thread.parse(raw, { maxRecipients: 1000 }, never);
      const here = await parseReport(raw, { maxRecipients: 1000 });
      expect(there).toEqual(here);
      expect(there.original?.get('message-id')).toBe(here.original?.get('message-id'));
      expect(there.original?.get('message-id')).toBeDefined();
    }
    expect(threads.workers).toHaveLength(1);
  } finally {
    await thread.close();
  }
  expect(threads.exited.size).toBe(1);
});

test('a parse told to stop mid-way ends with its thread: the promise rejects with the reason, no answer ever comes, and the next report gets a new thread', async () => {
  const threads = spawned();
  const thread = new ReportThread(VOLLEY, threads.spawn);
  try {
    const stop = new AbortController();
    const answers: unknown[] = [];
    const parse = thread.parse(slowReport(20_000), {}, stop.signal);
    parse.then((r) => answers.push(r), () => undefined);
    // The bundle loads in the thread (~0.5 s) before the parse begins.
    await waitUntil(() => thread.parsing, 30_000);
    const [first] = threads.workers;
    let late = 0;
    first.on('message', () => late++);
    stop.abort(new VolleyError('parse-timeout', 'not parsed within 30000 ms'));
    await expect(parse).rejects.toMatchObject({ code: 'parse-timeout' });
    // Terminated inside its long synchronous step, not after it: the thread is gone.
    await waitUntil(() => threads.exited.has(first), 30_000);
    expect(thread.parsing).toBe(false);
    expect(late).toBe(0);
    expect(answers).toEqual([]);

    const next = await thread.parse(fixture('postfix-dsn.eml'), {}, never);
    expect(next.kind).toBe('dsn');
    expect(threads.workers).toHaveLength(2);
  } finally {
    await thread.close();
  }
  expect(threads.exited.size).toBe(2);
});

test('a parse whose signal has already aborted never reaches the thread', async () => {
  const threads = spawned();
  const thread = new ReportThread(VOLLEY, threads.spawn);
  const stop = new AbortController();
  stop.abort(new VolleyError('parse-timeout', 'late'));
  await expect(thread.parse(fixture('postfix-dsn.eml'), {}, stop.signal)).rejects.toMatchObject({ code: 'parse-timeout' });
  expect(threads.workers).toEqual([]);
  await thread.close();
});

test('a thread left idle THREAD_IDLE_MS is ended (its ~65 MB let go); the next report starts another', async () => {
  const threads = spawned();
  const timers = new ManualTimers();
  const thread = new ReportThread(VOLLEY, threads.spawn, timers);
  try {
    await thread.parse(fixture('postfix-dsn.eml'), { maxRecipients: 1000 }, never);
    expect(timers.pending()).toEqual([THREAD_IDLE_MS]);
    timers.fire();
    await waitUntil(() => threads.exited.has(threads.workers[0]));
    const again = await thread.parse(fixture('yahoo-arf.eml'), { maxRecipients: 1000 }, never);
    expect(again.kind).toBe('arf');
    expect(threads.workers).toHaveLength(2);
  } finally {
    await thread.close();
  }
});
