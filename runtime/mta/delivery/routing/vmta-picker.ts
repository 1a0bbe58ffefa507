import type { VolleyConfig } from '../../../shared/config/types';
import type { Source } from '../../../shared/smtp/connector';

/**
 * Chooses the virtual MTA (sending IP + HELO) for a message: the one it names,
 * else a weighted pick from the pool it names, else from the pool a routing
 * rule gives its sender domain, else from the default pool. With no VMTAs
 * configured at all (a single-node test setup) the OS picks the address.
 */
export class VmtaPicker {
  private vmtas = new Map<string, { ip: string; helo: string }>();
  private pools = new Map<string, { name: string; weight: number }[]>();
  private config!: VolleyConfig;

  constructor(config: VolleyConfig) {
    this.apply(config);
  }

  apply(config: VolleyConfig): void {
    this.config = config;
    this.vmtas = new Map(config.vmtas.map((v) => [v.name, { ip: v.ip, helo: v.helo }]));
    this.pools = new Map(config.pools.map((p) => [p.name, p.vmtas]));
  }

  pick(message: { vmta?: string; pool?: string; from: string }, random = Math.random): Source & { pool?: string } {
    if (message.vmta && this.vmtas.has(message.vmta)) return this.source(message.vmta, message.pool);
    const senderDomain = message.from.slice(message.from.lastIndexOf('@') + 1).toLowerCase();
    const rule = this.config.routing.find((r) => r.senderDomain === senderDomain);
    if (!message.pool && rule?.vmta) return this.source(rule.vmta, undefined);
    const poolName = message.pool ?? rule?.pool ?? this.config.defaultPool;
    const members = poolName ? this.pools.get(poolName) : undefined;
    if (!members || members.length === 0) return { helo: this.config.hostname };
    const total = members.reduce((n, m) => n + m.weight, 0);
    let x = random() * total;
    for (const m of members) {
      x -= m.weight;
      if (x < 0) return this.source(m.name, poolName);
    }
    return this.source(members[members.length - 1].name, poolName);
  }

  private source(name: string, pool: string | undefined): Source & { pool?: string } {
    const v = this.vmtas.get(name)!;
    return { ip: v.ip, helo: v.helo, vmta: name, pool };
  }
}
