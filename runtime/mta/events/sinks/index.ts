// The sink registry: turns `events.sinks` into running sinks by type. Batch
// sinks (webhook, sqlite) get a dispatcher each; the s3 shipper gets the
// closed files of the event log and of every sqlite sink as its sources.
import type { FilterConfig, SinkConfig } from '../../../shared/config/events';
import type { EventSink, ShipSource, SinkDeps } from '../types';
import { createS3Shipper, type ShipperStats } from './s3-shipper';
import { createSqliteSink } from './sqlite';
import { createWebhookSink } from './webhook';

export interface BatchSinkEntry {
  sink: EventSink;
  filter?: FilterConfig;
  type: string;
}

export interface Shipper {
  start(): void;
  close(): Promise<void>;
  stats(): ShipperStats;
  /** A round now (`volley drain` hands over the last events); the s3 shipper has it, a test's stand-in may not. */
  shipNow?(): Promise<void>;
  /** Closed files not shipped yet, counted now. */
  unshipped?(): Promise<number>;
}

export interface BuiltSinks {
  batch: BatchSinkEntry[];
  shipper?: Shipper;
}

export interface RegistryDeps extends SinkDeps {
  /** The `<env>` of the S3 key scheme. */
  env: string;
  /** The event log's closed files (shipped when the s3 sink's `ship` has `events`). */
  eventsSource: ShipSource;
}

export function createSinks(configs: readonly SinkConfig[], deps: RegistryDeps): BuiltSinks {
  const batch: BatchSinkEntry[] = [];
  const sqliteSources: ShipSource[] = [];
  const { env, eventsSource, ...sinkDeps } = deps;
  for (const c of configs) {
    if (c.type === 'webhook') batch.push({ sink: createWebhookSink(c, sinkDeps), filter: c.filter, type: c.type });
    else if (c.type === 'sqlite') {
      const sink = createSqliteSink(c, sinkDeps);
      sqliteSources.push(sink.shipSource());
      batch.push({ sink, filter: c.filter, type: c.type });
    }
  }
  // At most one s3 sink (the config refuses more): a closed file is shipped once.
  const s3 = configs.find((c) => c.type === 's3');
  let shipper: Shipper | undefined;
  if (s3) {
    const sources = [...(s3.ship.includes('events') ? [eventsSource] : []), ...(s3.ship.includes('sqlite') ? sqliteSources : [])];
    shipper = createS3Shipper(s3, { ...sinkDeps, env, sources });
  }
  return { batch, shipper };
}
