// A proxy worker's throttle authority asks the node's one ClusterThrottles
// (the primary's) under an id of its own making. The MTA's node must still be
// read from that id: an MTA node whose control links land on two workers of
// the proxy is one MTA to the merge, as when they land on one.
import type { FromProxyWorker } from '../../../runtime/proxy/ipc';
import { WorkerThrottles } from '../../../runtime/proxy/worker-throttles';
import { ClusterThrottles } from '../../../runtime/shared/throttle/cluster-throttles';

/** Workers of one proxy node whose questions the primary's ClusterThrottles answers, as runtime/proxy/primary.ts does over IPC. */
function node(merge: 'sum' | 'average', workers: number): { throttles: ClusterThrottles; worker: WorkerThrottles[] } {
  const throttles = new ClusterThrottles(merge);
  const worker: WorkerThrottles[] = [];
  for (let i = 0; i < workers; i++) {
    const send = (m: FromProxyWorker): void => {
      if (m.type !== 'throttle') return;
      const q = m.q;
      const value = q.op === 'connection' ? throttles.tryConnection(q.mta, q.key, q.limits, q.reclaim) : q.op === 'message' ? throttles.tryMessage(q.mta, q.key, q.limits) : q.op === 'release' ? throttles.releaseConnection(q.mta, q.key) : throttles.forget(q.mta);
      if (m.id !== 0 && value !== undefined) queueMicrotask(() => worker[i].answer(m.id, value));
    };
    worker.push(new WorkerThrottles(i, send));
  }
  return { throttles, worker };
}

const key = '203.0.113.10|gmail';

test('under sum, an MTA node whose workers\' control links sit on two proxy workers adds its share once', async () => {
  const { throttles, worker } = node('sum', 2);
  const share = { maxConnections: 1, maxMessagesPerHour: 10 };
  // As serveControl names control connections: `<hello name>#<n>`; an MTA worker says `<node>/w<i>`.
  await worker[0].tryMessage('mta-1/w0#1', key, share);
  await worker[1].tryMessage('mta-1/w1#2', key, share);
  await worker[0].tryMessage('mta-2/w0#3', key, share);
  expect(throttles.limitsFor(key)).toEqual({ maxConnections: 2, maxMessagesPerHour: 20 });
  const grants = [await worker[0].tryConnection('mta-1/w0#1', key, share), await worker[1].tryConnection('mta-1/w1#2', key, share), await worker[0].tryConnection('mta-2/w0#3', key, share)];
  expect(grants).toEqual([true, true, false]);
});

test('ids from two workers never meet: a release or forget on one worker leaves the same name on the other alone', async () => {
  const { throttles, worker } = node('average', 2);
  const two = { maxConnections: 2, maxMessagesPerHour: null };
  expect(await worker[0].tryConnection('mta-1/w0#1', key, two)).toBe(true);
  expect(await worker[1].tryConnection('mta-1/w0#1', key, two)).toBe(true);
  worker[0].forget('mta-1/w0#1');
  expect(throttles.connections(key)).toBe(1);
  worker[1].releaseConnection('mta-1/w0#1', key);
  expect(throttles.connections(key)).toBe(0);
});
