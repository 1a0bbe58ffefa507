// Which destination domains ask for TLS-RPT reports: those that publish a
// `_smtp._tls` TXT record (RFC 8460 3). Only their sessions are counted, so a
// sender that reaches a million domains a day keeps counts (and writes lines)
// for the few hundred that want them, not for every one. Answers are kept for
// some hours; a lookup that fails counts the domain in (the sender asks again
// before it reports, so nothing is sent to a domain that does not ask).

import type { DnsTxt } from './dns-txt';
import { parseTlsRptTxt } from './tls-rpt-report';

const KEEP_MS = 6 * 3_600_000;
const MAX_ENTRIES = 200_000;

export class ReportInterest {
  private readonly known = new Map<string, { wants: boolean; expires: number }>();
  private readonly asking = new Map<string, ((wants: boolean) => void)[]>();
  private readonly lookups = new Set<Promise<void>>();

  constructor(
    private dns: DnsTxt,
    private readonly now: () => number = Date.now,
  ) {}

  /** A refresh may point at other resolvers; what is known stays. */
  setDns(dns: DnsTxt): void {
    this.dns = dns;
  }

  /** Whether `domain` wants reports: at once when known, else undefined and `then` is called with the answer. */
  wants(domain: string, then: (wants: boolean) => void): boolean | undefined {
    const hit = this.known.get(domain);
    if (hit && hit.expires > this.now()) return hit.wants;
    const waiting = this.asking.get(domain);
    if (waiting) {
      waiting.push(then);
      return undefined;
    }
    this.asking.set(domain, [then]);
    const lookup = this.dns.txt(`_smtp._tls.${domain}`).then(
      (records) => this.answer(domain, parseTlsRptTxt(records).length > 0),
      () => this.answer(domain, true),
    );
    this.lookups.add(lookup);
    void lookup.finally(() => this.lookups.delete(lookup));
    return undefined;
  }

  /** Resolves once no lookup is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.lookups.size > 0) await Promise.allSettled([...this.lookups]);
  }

  private answer(domain: string, wants: boolean): void {
    if (this.known.size >= MAX_ENTRIES) this.known.delete(this.known.keys().next().value!);
    this.known.set(domain, { wants, expires: this.now() + KEEP_MS });
    const waiting = this.asking.get(domain) ?? [];
    this.asking.delete(domain);
    for (const then of waiting) then(wants);
  }
}
