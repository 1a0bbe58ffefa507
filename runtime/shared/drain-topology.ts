// The `drain:` section of an MTA config, written from one place for the two
// fleets that generate configs: the CDK stacks (stacks/topology.ts: every
// MTA of an environment, the MTA subnets admitted) and `volley local`
// (runtime/local/local-fleet.ts: each MTA on its own loopback port). Field
// names are the config's (runtime/shared/config/drain.ts, owned by the drain
// endpoint): listen {address, port}, secret_file, accept_from.

/** One node's drain endpoint as its config must say it. */
export interface DrainEndpoint {
  /** drain.listen: where this node's drain endpoint listens. */
  readonly address: string;
  readonly port: number;
  /** The shared HMAC secret every source signs with and every destination checks. */
  readonly secretFile: string;
  /** Source CIDRs a destination admits (on top of the signature). */
  readonly acceptFrom: readonly string[];
}

/** The section as a plain object, to be set as `drain` in a config document. */
export function drainSection(endpoint: DrainEndpoint): Record<string, unknown> {
  return {
    listen: { address: endpoint.address, port: endpoint.port },
    secret_file: endpoint.secretFile,
    accept_from: [...endpoint.acceptFrom],
  };
}
