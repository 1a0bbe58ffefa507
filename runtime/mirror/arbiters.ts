// Opens the arbiter the mirror config names (file or S3).
import type { Arbiter } from './arbiter';
import { FileArbiter } from './arbiter-file';
import { S3Arbiter } from './arbiter-s3';
import type { ArbiterConfig } from './config';

export function openArbiter(config: ArbiterConfig, leaseTtlMs: number): Arbiter {
  if (config.kind === 'file') return new FileArbiter(config.path);
  // A request may take at most a sixth of the ttl: a hung one fails while a retry still has time.
  return new S3Arbiter({ bucket: config.bucket, key: config.key, region: config.region, endpoint: config.endpoint, requestTimeoutMs: Math.max(200, Math.floor(leaseTtlMs / 6)) });
}
