import { Clock, pollUntil } from './clock';
import { BootstrapError } from './errors';

/** Waits for the daemon's readiness endpoint to answer 200 (the same check the load balancer makes). */
export async function waitReady(clock: Clock, url: string, timeoutMs: number): Promise<void> {
  try {
    await pollUntil(clock, { timeoutMs, intervalMs: 2000, what: `${url} to answer 200` }, async () => {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
        await response.arrayBuffer();
        return response.status === 200 ? true : undefined;
      } catch {
        return undefined; // not listening yet
      }
    });
  } catch (err) {
    throw new BootstrapError('ENOTREADY', (err as Error).message);
  }
}
