// Which events a sink takes (its `filter` in config): every criterion given
// must match, an absent one matches all. Kept apart so the dispatcher, a
// replay and the tests agree on one reading of it.
import type { FilterConfig } from '../../shared/config/events';
import type { VolleyEvent } from './types';

export function matchesFilter(filter: FilterConfig | undefined, e: VolleyEvent): boolean {
  if (!filter) return true;
  if (filter.kinds && !filter.kinds.includes(e.event)) return false;
  // Events without a status (complaints, purges) pass a status filter: it
  // narrows the kinds that have one, it does not exclude the others.
  const status = 'status' in e ? e.status : undefined;
  if (filter.statuses && status !== undefined && !filter.statuses.includes(status)) return false;
  if (filter.metadata) {
    for (const [key, values] of Object.entries(filter.metadata)) {
      const v = e.metadata?.[key];
      if (v === undefined || !values.includes(v)) return false;
    }
  }
  return true;
}
