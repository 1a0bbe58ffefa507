// Where an environment's MTAs ship their closed event-log and SQLite files:
// the events bucket of the storage stack, under one prefix per node. Both
// the IAM grant (storage-stack.ts) and the MTAs' generated `s3` sink
// (topology.ts) come from here, so the key the shipper writes
// (`<prefix>/<env>/<node>/<kind>/...`, runtime/mta/events/sinks/s3-key.ts) is
// always inside what the node's role may write. No aws-cdk-lib import: the
// config generator uses it too.
import type { Document } from 'yaml';
import type { EnvironmentConfig } from './environments';

/** The `prefix` of the MTAs' s3 sink. */
export const EVENTS_PREFIX = 'mta';

/** The events bucket's name: a plain string at synth (account and region are literals in the environment file). */
export function eventsBucketName(env: Pick<EnvironmentConfig, 'name' | 'account' | 'region'>): string {
  return `volley-${env.name}-events-${env.account}-${env.region}`;
}

/** What one node may write under: `<prefix>/<env>/<node id>`. An MTA's node id is its slot id (VOLLEY_NODE_ID in instance.env). */
export function shippingPrefix(envName: string, nodeId: string): string {
  return `${EVENTS_PREFIX}/${envName}/${nodeId}`;
}

/** Where HA pairs keep their arbiter leases in the events bucket (never under the shippers' prefix). */
export const ARBITER_PREFIX = 'mirror';

/** One pair's lease object: `mirror/<env>/<slot>/lease.json`; the pair's two nodes, and nothing else, may read and write it. */
export function arbiterKey(envName: string, slotId: string): string {
  return `${ARBITER_PREFIX}/${envName}/${slotId}/lease.json`;
}

interface RawS3Sink {
  type?: unknown;
  name?: unknown;
  bucket?: unknown;
  prefix?: unknown;
  region?: unknown;
  endpoint?: unknown;
}

/**
 * Adds the environment's `s3` sink to an MTA config document, or checks the
 * one it has: its gzip, keep_local, ship and interval stay the config's, but
 * bucket, prefix and region must be the environment's — anything else the
 * node's role may not write, and every file would wait on disk forever.
 * Returns an error message, or undefined.
 */
export function addS3Sink(doc: Document, env: EnvironmentConfig): string | undefined {
  const bucket = eventsBucketName(env);
  const sinks = doc.getIn(['events', 'sinks']) as { toJSON(): unknown } | undefined;
  const list = (sinks?.toJSON() ?? []) as RawS3Sink[];
  const own = list.findIndex((s) => s?.type === 's3');
  if (own < 0) {
    const sink = { name: 's3', type: 's3', bucket, prefix: EVENTS_PREFIX, region: env.region };
    if (sinks) doc.addIn(['events', 'sinks'], doc.createNode(sink));
    else doc.setIn(['events', 'sinks'], doc.createNode([sink]));
    return undefined;
  }
  const s = list[own];
  const wrong = [
    s.bucket !== bucket && `bucket must be ${bucket} (the storage stack's events bucket), not ${String(s.bucket)}`,
    (s.prefix ?? '') !== EVENTS_PREFIX && `prefix must be "${EVENTS_PREFIX}" (the instance role may write only under ${EVENTS_PREFIX}/${env.name}/<node>/), not "${String(s.prefix ?? '')}"`,
    s.region !== undefined && s.region !== env.region && `region must be ${env.region}, not ${String(s.region)}`,
    s.endpoint !== undefined && 'endpoint must not be set: the instance role is for AWS S3',
  ].filter((w): w is string => typeof w === 'string');
  if (wrong.length > 0) return `events.sinks[${own}] (s3): ${wrong.join('; ')}. Or leave the s3 sink out: it is generated from stacks/environments/${env.name}.ts`;
  if (s.region === undefined) doc.setIn(['events', 'sinks', own, 'region'], env.region);
  return undefined;
}
