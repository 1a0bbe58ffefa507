// The inbound listener's counters. It runs in the MTA primary, so these live
// on the primary's default registry (the workers' are merged separately).

import { Counter } from 'prom-client';

export const inboundMetrics = {
  reports: new Counter({ name: 'volley_inbound_reports_total', help: 'Inbound mail taken by the report listener, by what it became (bounce, complaint, unsubscribe, no-event, unmatched)', labelNames: ['result'] }),
  unmatched: new Counter({ name: 'volley_inbound_unmatched_total', help: 'Inbound mail kept in inbound/unmatched/, by why it could not be mapped', labelNames: ['reason'] }),
  unmatchedRemoved: new Counter({ name: 'volley_inbound_unmatched_removed_total', help: 'Files removed from inbound/unmatched/ to stay within inbound.unmatched_max' }),
  refused: new Counter({ name: 'volley_inbound_refused_total', help: 'Inbound transactions refused, by reason (relay, oversize, write-failed)', labelNames: ['reason'] }),
};
