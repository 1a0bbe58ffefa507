// PLACEHOLDER: replaced by the s3 branch. Exists only so the sink registry
// type-checks in the queue branch; the lead replaces it at merge.
import type { S3SinkConfig } from '../../../shared/config/events';
import { VolleyError } from '../../../shared/errors';
import type { ShipSource, SinkDeps } from '../types';

export interface ShipperStats {
  shipped: number;
  lastError?: string;
}

export function createS3Shipper(config: S3SinkConfig, deps: SinkDeps & { env: string; sources: ShipSource[] }): { start(): void; close(): Promise<void>; stats(): ShipperStats } {
  void deps;
  throw new VolleyError('ENOTBUILT', `event sink "${config.name}": the s3 shipper is not built in this branch`);
}
