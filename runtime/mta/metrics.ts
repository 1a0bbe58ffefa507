import cluster from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Histogram, register } from 'prom-client';

// One set per worker process; the primary's admin server merges the workers'
// registries (prom-client's AggregatorRegistry) into one /metrics page.
export const metrics = {
  accepted: new Counter({ name: 'volley_intake_accepted_total', help: 'Messages accepted (durable) by intake path', labelNames: ['via'] }),
  rejected: new Counter({ name: 'volley_intake_rejected_total', help: 'Refused submissions by reason', labelNames: ['reason'] }),
  // A refused (451) message whose withdrawal the sync mirror did not confirm in time: delivered twice only if the primary dies before its next scan.
  withdrawalsUnmirrored: new Counter({ name: 'volley_intake_withdrawals_unmirrored_total', help: 'Sync mirror refusals (451) answered before the secondary confirmed the withdrawal\'s done record' }),
  connections: new Counter({ name: 'volley_smtp_connections_total', help: 'SMTP connections accepted', labelNames: ['listener'] }),
  // A histogram, not a summary: buckets add up exactly across workers, and the
  // benchmark reads its percentiles from them.
  commitSeconds: new Histogram({
    name: 'volley_intake_commit_seconds',
    help: 'End of DATA (or request body) to the durable acknowledgement',
    buckets: [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1],
  }),
  fsyncSeconds: new Histogram({
    name: 'volley_spool_fsync_seconds',
    help: 'Latency of spool group commits: the durable (O_DSYNC) write of a batch',
    buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
  }),
  // A debug counter: how often workers ask the primary about throttles, per
  // op. Message permits come in leased blocks, so per delivered message this
  // stays far below 1 (one round trip per message before leases).
  throttleIpc: new Counter({ name: 'volley_mta_throttle_ipc_total', help: 'Throttle messages a worker sent its primary, by op', labelNames: ['op'] }),
  spoolMessages: new Gauge({ name: 'volley_spool_messages', help: 'Messages queued in the spool', aggregator: 'sum' }),
  spoolBytes: new Gauge({ name: 'volley_spool_bytes', help: 'Bytes in live spool segments', aggregator: 'sum' }),
  spoolRecords: new Gauge({ name: 'volley_spool_records_written', help: 'Records written to the spool since the worker started', aggregator: 'sum' }),
};

export { register };

// prom-client answers the primary's metric requests only once an
// AggregatorRegistry has been constructed in the worker too.
if (cluster.isWorker) new AggregatorRegistry();
