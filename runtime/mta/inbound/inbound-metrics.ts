// The inbound listener's counters. It runs in the MTA primary, so these live
// on a registry of their own that the primary's /metrics appends to the
// workers' merged ones (the default registry there would also hold the
// workers' metric definitions, bundled into the same file, at zero).

import { Counter, Gauge, Registry } from 'prom-client';

export const inboundRegistry = new Registry();

export const inboundMetrics = {
  reports: new Counter({ name: 'volley_inbound_reports_total', help: 'Inbound mail taken by the report listener, by what it became (bounce, complaint, unsubscribe, no-event, unmatched)', labelNames: ['result'], registers: [inboundRegistry] }),
  unmatched: new Counter({ name: 'volley_inbound_unmatched_total', help: 'Inbound mail kept in inbound/unmatched/, by why it could not be mapped (too-many-recipients: mapped in part)', labelNames: ['reason'], registers: [inboundRegistry] }),
  unmatchedRemoved: new Counter({ name: 'volley_inbound_unmatched_removed_total', help: 'Files removed from inbound/unmatched/ to stay within inbound.unmatched_max', registers: [inboundRegistry] }),
  refused: new Counter({ name: 'volley_inbound_refused_total', help: 'Inbound transactions refused, by reason (relay, oversize, write-failed, draining, parse-thread-failed)', labelNames: ['reason'], registers: [inboundRegistry] }),
  parseWaiting: new Gauge({ name: 'volley_inbound_parse_waiting', help: 'Inbound reports received whole and waiting for their turn to be parsed (one is parsed at a time)', registers: [inboundRegistry] }),
  parseDropped: new Counter({ name: 'volley_inbound_parse_dropped_total', help: 'Inbound reports dropped while waiting to be parsed because their session had closed (never answered 250: the sender sends them again)', registers: [inboundRegistry] }),
  truncated: new Counter({ name: 'volley_inbound_truncated_total', help: 'Inbound reports naming more recipients than inbound.max_report_recipients: the first ones made events, the report was kept in inbound/unmatched/', registers: [inboundRegistry] }),
};
