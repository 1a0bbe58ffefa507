import type { SmtpClientSession } from '../shared/smtp/client';
import type { TlsRequirement } from '../shared/smtp/connector';

/** An MX session the proxy owns, and how many transactions it has carried. */
export interface MxSession {
  session: SmtpClientSession;
  key: string;
  /** The source address, so a reload that removes it can retire the session. */
  sendingIp: string;
  transactions: number;
  capabilities: string[];
}

/**
 * Sessions are shared only between identical requirements: a session opened
 * under `may` (perhaps in clear after a failed handshake) must never be
 * handed to a connect that asks for `verify` or `dane`, nor one verified for
 * some names to a connect that names others.
 */
export function poolKey(sendingIp: string, mxIp: string, port: number, helo: string, tls: TlsRequirement): string {
  const tlsa = (tls.tlsa ?? []).map((r) => `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toLowerCase()}`).sort();
  const requirement = JSON.stringify([tls.mode, tls.policy, tls.testing === true, (tls.names ?? []).map((n) => n.toLowerCase()).sort(), tlsa]);
  return `${sendingIp}|${mxIp}:${port}|${helo.toLowerCase()}|${requirement}`;
}

interface Idle {
  mx: MxSession;
  timer: NodeJS.Timeout;
}

/**
 * Idle MX sessions, keyed by (sending IP, MX ip:port, HELO, TLS requirement), for
 * the next connect from any MTA. A session leaves after `idleMs` unused, when
 * it has carried `maxTransactions`, or when the MX has closed it.
 */
export class MxPool {
  private readonly idle = new Map<string, Idle[]>();
  reused = 0;
  /** Once set (the proxy is stopping), sessions handed back are QUIT, not kept. */
  stopped = false;

  // Not readonly: a config reload changes them for sessions handed back from then on.
  constructor(
    public idleMs: number,
    public maxTransactions: number,
  ) {}

  take(key: string): MxSession | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const { mx, timer } = list.pop()!;
      clearTimeout(timer);
      if (list.length === 0) this.idle.delete(key);
      if (mx.session.usable) {
        this.reused++;
        return mx;
      }
      mx.session.close();
    }
    return undefined;
  }

  /** Keeps the session for reuse when it can carry more; QUITs it otherwise. */
  put(mx: MxSession, reuse: boolean): boolean {
    if (!reuse || this.stopped || !mx.session.usable || mx.transactions >= this.maxTransactions || this.idleMs <= 0) {
      mx.session.close();
      return false;
    }
    let list = this.idle.get(mx.key);
    if (!list) this.idle.set(mx.key, (list = []));
    const entry: Idle = {
      mx,
      timer: setTimeout(() => {
        const l = this.idle.get(mx.key);
        const i = l?.indexOf(entry) ?? -1;
        if (l && i >= 0) {
          l.splice(i, 1);
          if (l.length === 0) this.idle.delete(mx.key);
        }
        mx.session.close();
      }, this.idleMs),
    };
    entry.timer.unref();
    list.push(entry);
    return true;
  }

  get size(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /** QUITs the idle sessions `drop` picks (a reload removed their sending IP); returns how many. */
  closeWhere(drop: (mx: MxSession) => boolean): number {
    let n = 0;
    for (const [key, list] of this.idle) {
      const keep = list.filter((entry) => {
        if (!drop(entry.mx)) return true;
        clearTimeout(entry.timer);
        entry.mx.session.close();
        n++;
        return false;
      });
      if (keep.length === 0) this.idle.delete(key);
      else this.idle.set(key, keep);
    }
    return n;
  }

  /**
   * QUITs one idle session kept under `key` (the longest idle) and resolves
   * once it is closed at both ends, with how many it closed (0 or 1): another
   * worker of this node opens a session to the same MX instead of reusing
   * this one, and the MX must not see both open (its connection limit).
   */
  async evictOne(key: string): Promise<number> {
    const list = this.idle.get(key);
    const entry = list?.shift();
    if (!list || !entry) return 0;
    if (list.length === 0) this.idle.delete(key);
    clearTimeout(entry.timer);
    entry.mx.session.close();
    await entry.mx.session.whenClosed();
    return 1;
  }

  closeAll(): void {
    for (const list of this.idle.values()) {
      for (const { mx, timer } of list) {
        clearTimeout(timer);
        mx.session.close();
      }
    }
    this.idle.clear();
  }
}
