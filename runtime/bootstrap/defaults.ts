// The bootstrap commands' defaults, apart from the code that needs the AWS SDK:
// the CLI reads them to declare its options, and every daemon that starts
// through the same CLI would otherwise load the EC2 client for nothing.

export const MTA_DEFAULTS = {
  persistentPath: '/var/lib/volley',
  unit: 'volley-mta.service',
  readyUrl: 'http://127.0.0.1:8025/readyz',
  releaseTimeoutMs: 15 * 60_000,
  attachTimeoutMs: 3 * 60_000,
  deviceTimeoutMs: 2 * 60_000,
  readyTimeoutMs: 30 * 60_000,
  byIdDir: '/dev/disk/by-id',
} as const;

export const PROXY_DEFAULTS = {
  unit: 'volley-proxy.service',
  // The proxy config's admin_listen default (runtime/proxy/config.ts PROXY_ADMIN_DEFAULT).
  readyUrl: 'http://127.0.0.1:7626/readyz',
  releaseTimeoutMs: 15 * 60_000,
  attachTimeoutMs: 3 * 60_000,
  addressTimeoutMs: 3 * 60_000,
  readyTimeoutMs: 10 * 60_000,
} as const;

/** A node of an HA pair (mta.ha): MTA_DEFAULTS, plus its mirror. */
export const PAIR_DEFAULTS = {
  mirrorUnit: 'volley-mirror.service',
  // The generated mirror config's admin_listen (stacks/mirror-topology.ts MIRROR_ADMIN).
  mirrorAdminUrl: 'http://127.0.0.1:7628',
  addressTimeoutMs: 3 * 60_000,
  mirrorTimeoutMs: 5 * 60_000,
} as const;
