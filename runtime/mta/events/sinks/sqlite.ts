// PLACEHOLDER: replaced by the sqlite branch. Exists only so the sink
// registry type-checks in the queue branch; the lead replaces it at merge.
import type { SqliteSinkConfig } from '../../../shared/config/events';
import { VolleyError } from '../../../shared/errors';
import type { EventSink, ShipSource, SinkDeps } from '../types';

export function createSqliteSink(config: SqliteSinkConfig, deps: SinkDeps): EventSink & { shipSource(): ShipSource } {
  void deps;
  throw new VolleyError('ENOTBUILT', `event sink "${config.name}": the sqlite sink is not built in this branch`);
}
