// Destinations an operator paused (`volley` admin: a domain, a VMTA, or one
// VMTA's mail to one domain). Owns only that set; the queues it holds stay
// where they are, and lifting a hold is the engine's to act on.
import type { Destination } from '../queues/destinations';
import type { Selector } from './queue-control';

export class OperatorHolds {
  /** (VMTA or "*") | (domain or "*"). */
  private readonly held = new Set<string>();

  pause(sel: Selector): void {
    this.held.add(holdKey(sel));
  }

  resume(sel: Selector): void {
    this.held.delete(holdKey(sel));
  }

  holds(dest: Destination): boolean {
    if (this.held.size === 0) return false;
    const v = dest.source.vmta ?? '-';
    return ['*|*', `${v}|*`, `*|${dest.domain}`, `${v}|${dest.domain}`].some((k) => this.held.has(k));
  }

  list(): string[] {
    return [...this.held];
  }
}

function holdKey(sel: Selector): string {
  return `${sel.vmta ?? '*'}|${sel.domain?.toLowerCase() ?? '*'}`;
}
