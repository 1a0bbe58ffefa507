// The typed shape of one environment. Every stack reads its sizes, IPs and
// names from here, so an environment is reviewed as one file in git.

export interface LoadBalancerConfig {
  /** Also the Route 53 set identifier, so `volley dns weight NAME` finds it. */
  readonly name: string;
  /** Route 53 weight, 0–255. 0 keeps the load balancer out of rotation. */
  readonly weight: number;
}

export interface ProxyConfig {
  readonly name: string;
  readonly availabilityZone: string;
  /** Primary private IP of the standalone ENI: the stable address MTAs dial. */
  readonly interfaceIp: string;
  /** Secondary private IPs of the standalone ENI, each fronted by one Elastic IP. */
  readonly sendingIps: readonly string[];
}

export interface EnvironmentConfig {
  readonly name: string;
  readonly account: string;
  readonly region: string;
  /** Literal AZ names: looking them up would need credentials at synth. */
  readonly availabilityZones: readonly string[];
  /**
   * Pinned per environment so a new AMI release never replaces instances by
   * surprise. It must be an AL2023 release that packages `nodejs24`: the user
   * data installs it, and dnf stays on the image's own release (check with
   * `dnf list nodejs24` on the image before pinning a new id).
   */
  readonly amiId: string;
  /** Repo-relative path of the Volley config published with the deploy. */
  readonly volleyConfigFile: string;
  readonly network: {
    readonly vpcCidr: string;
    readonly natGateways: number;
    /** Injector networks allowed to reach the load balancers and the MTAs. */
    readonly allowedCidrs: readonly string[];
  };
  readonly mta: {
    readonly instanceType: string;
    readonly slotsPerAz: number;
    /**
     * Every MTA slot whose retained volume exists, current or removed. A slot
     * removed from the tier (slotsPerAz lowered, an AZ dropped) keeps its
     * volume, and with it any queue it still holds: `cdk synth` warns for
     * each one listed here but no longer in the tier, until its volume is
     * deleted and the slot taken off this list (README, scaling in). Every
     * current slot must be listed, so a removal cannot go unnoticed.
     */
    readonly volumeSlots: readonly string[];
    readonly volume: {
      readonly sizeGiB: number;
      readonly iops: number;
      readonly throughputMiBps: number;
    };
    readonly smtpPorts: readonly number[];
    readonly apiPort: number;
    /** Serves GET /readyz for the load balancers' health checks. */
    readonly adminPort: number;
    /** The drain endpoint (the config's drain.listen): MTAs reach each other here, nothing else does. */
    readonly drainPort: number;
    /**
     * The MTAs' own secret files (DKIM keys, webhook secrets, the VERP key, TLS
     * pairs): names of Secrets Manager secrets the operator creates (not the
     * stack: no key is ever in a template), each `volley/<env>/<name>` holding
     * `{"files": {"/etc/volley/secrets/<path>": "<file text>", ...}}`. Several,
     * because one secret holds at most 64 KB. Only the MTA slots may read
     * them; `volley secret-files fetch` writes them before each start and on
     * every config sync (README, "The MTA's own secret files").
     */
    readonly fileSecrets?: readonly string[];
    /**
     * HA pairs (README, "MTA slots as HA pairs"): `true` makes every slot
     * two nodes in two AZs, each with its own volume, group and mirror
     * interface, kept byte-identical by `volley mirror`; only the primary
     * runs the MTA. Off when absent. volumeSlots then lists both nodes'
     * volumes (`<slot>` and `<slot>-b`).
     */
    readonly ha?: boolean;
    /** With ha: the mirror link's port, open only between the two nodes of a pair. */
    readonly mirrorPort?: number;
    /** With ha: the mirror's mode (its config's `mode`); async when absent. */
    readonly mirrorMode?: 'async' | 'sync';
    /**
     * With mirrorMode sync: what happens when the secondary has not
     * acknowledged for mirrorSyncTimeout (the mirror's `sync_policy`; block
     * when absent). block: intake answers 451 4.3.0, so with one node of the
     * pair down the slot takes no mail at all; degrade: the primary goes on
     * alone and marks its secondary outdated (no automatic failover to it).
     */
    readonly mirrorSyncPolicy?: 'block' | 'degrade';
    /** With mirrorMode sync: how long a message waits for the secondary's ack before the policy applies (the mirror's `sync_timeout`, e.g. '2s'; 2s when absent). */
    readonly mirrorSyncTimeout?: string;
    /**
     * The listener for asynchronous bounces (RFC 3464 DSNs) and feedback-loop
     * reports (RFC 5965 ARF), README "Inbound bounces and complaints". Absent:
     * no listener, no load balancer for it. Present: the MTA config gets
     * `inbound: { address: 0.0.0.0, port, domains }` (stacks/topology.ts), and
     * an internet-facing NLB takes port 25 for the bounce domains' MX and
     * forwards it to `port` on every MTA (stacks/constructs/inbound-entry.ts).
     */
    readonly inbound?: {
      /** The MTAs' inbound listener port (not 25: the injection listener has it); the NLB's own listener is on 25. */
      readonly port: number;
      /** The bounce / feedback-loop domains: the only recipients' domains the listener takes (the config's inbound.domains). */
      readonly domains: readonly string[];
    };
  };
  readonly proxy: {
    readonly instanceType: string;
    /** The port MTAs use to reach a proxy (data and control connections). */
    readonly port: number;
    readonly proxies: readonly ProxyConfig[];
  };
  readonly ingress: {
    readonly internetFacing: boolean;
    readonly apiListenerPort: number;
    /** Longest SMTP transaction we let finish when a target leaves the group. */
    readonly deregistrationDelaySeconds: number;
    readonly loadBalancers: readonly LoadBalancerConfig[];
  };
  readonly dns: {
    readonly hostedZoneId: string;
    readonly zoneName: string;
    readonly smtpRecordName: string;
    readonly apiRecordName: string;
  };
  readonly storage: {
    readonly infrequentAccessAfterDays: number;
    readonly glacierAfterDays: number;
    readonly expireAfterDays: number;
  };
  readonly rollout: {
    /** How long one replacement may take (boot, attach, spool recovery) before the deploy fails. */
    readonly readyTimeoutMinutes: number;
  };
}
