// A drain destination node in process, for tests of what a source does when
// its destination has moved the mail on: the real drain endpoint on
// 127.0.0.1 with the node's own spool (one partition) and dedupe store under
// its persistent path, stopped and started again on the same port as an MTA
// would be around its own `volley drain`; and that drain itself
// (`drainedOnward`: a third node acknowledged these ids, this node removes them).
import { join } from 'node:path';
import pino from 'pino';
import { DrainEndpoint } from '../../runtime/mta/drain/endpoint';
import type { DrainRecord } from '../../runtime/mta/drain/protocol';
import { SeenIds, seenIdsPath } from '../../runtime/mta/drain/seen-ids';
import { LocalSpool } from '../../runtime/mta/drain/source/local-spool';
import { SpoolPartition } from '../../runtime/mta/spool/partition';
import { parseConfig } from '../../runtime/shared/config/load';
import { loadTls } from '../../runtime/shared/tls-files';
import { testConfigYaml } from './config';

export interface EndpointNode {
  port: number;
  /** host:port, as a source names it (and journals it). */
  label: string;
  /** Every id its endpoint stored in its spool, in order, across restarts: one id twice is a duplicate. */
  stored: string[];
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Starts node `persistentPath` taking drains signed with `secret` (any 127.0.0.1 source). */
export async function startEndpointNode(persistentPath: string, secret: Buffer): Promise<EndpointNode> {
  const config = parseConfig(`${testConfigYaml()}drain: { accept_from: [127.0.0.1/32] }\n`).drain!;
  const tls = await loadTls(undefined, persistentPath, 'localhost');
  const stored: string[] = [];
  let running: { endpoint: DrainEndpoint; seen: SeenIds; partition: SpoolPartition } | undefined;
  const node: EndpointNode = {
    port: 0,
    label: '',
    stored,
    async start() {
      const seen = await SeenIds.open(seenIdsPath(persistentPath), config.dedupeRetentionMs, { fsync: false });
      const partition = await SpoolPartition.open({ dir: join(persistentPath, 'spool', 'p000'), fsync: false });
      const endpoint = new DrainEndpoint({
        config,
        nodeId: 'endpoint-node',
        secrets: [secret],
        tls,
        seen,
        store: async (records: DrainRecord[]) => {
          for (const r of records) {
            await partition.appendMessage({ ...r.header, via: 'drain' }, r.body);
            stored.push(r.header.id);
          }
          return records.map(() => ({ status: 'queued' as const }));
        },
        unavailable: () => undefined,
        logger: pino({ level: 'silent' }),
      });
      await endpoint.listen({ address: '127.0.0.1', port: node.port });
      node.port = endpoint.port;
      node.label = `127.0.0.1:${node.port}`;
      running = { endpoint, seen, partition };
    },
    async stop() {
      if (!running) return;
      const r = running;
      running = undefined;
      await r.endpoint.close();
      await r.seen.close();
      await r.partition.close();
    },
  };
  await node.start();
  return node;
}

/** `volley drain` on the (stopped) node at `persistentPath`: a third node acknowledged `ids`, so they leave its spool. */
export async function drainedOnward(persistentPath: string, ids: readonly string[]): Promise<void> {
  const spool = await LocalSpool.open(persistentPath, 86_400_000);
  try {
    await spool.markDrained(ids);
    if (ids.some((id) => spool.has(id))) throw new Error('drainedOnward: some ids are still queued');
  } finally {
    await spool.close();
  }
}
