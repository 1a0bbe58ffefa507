import { Clock, pollUntil } from './clock';
import { BootstrapError } from './errors';

/**
 * Waits for the daemon's readiness endpoint to answer 200 (the same check the
 * load balancer makes). On timeout the error carries the last answer (a
 * proxy's /readyz names what is missing, e.g. a sending IP not on the host),
 * so the CloudFormation failure signal says why instead of only "not ready".
 */
export async function waitReady(clock: Clock, url: string, timeoutMs: number): Promise<void> {
  let last = 'no answer (not listening yet)';
  try {
    await pollUntil(clock, { timeoutMs, intervalMs: 2000, what: `${url} to answer 200` }, async () => {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
        const body = (await response.text()).replace(/\s+/g, ' ').trim();
        last = `${response.status}${body ? ` ${body.slice(0, 300)}` : ''}`;
        return response.status === 200 ? true : undefined;
      } catch (err) {
        last = `no answer (${(err as Error).message})`;
        return undefined;
      }
    });
  } catch (err) {
    throw new BootstrapError('ENOTREADY', `${(err as Error).message}; last answer: ${last}`);
  }
}
