// The backend pool as an lb worker runs it: health belongs to the primary, so
// the pool reports what traffic saw (a success only after a failure, never
// once per message) and takes the primary's word for up and down; and a
// reload's backend list keeping the state of backends still listed.
import { BackendPool, type HealthAuthority } from '../../../runtime/lb/backend-pool';
import { createLogger } from '../../../runtime/shared/log';

const logger = createLogger({ level: 'silent' });
const health = { intervalMs: 1000, timeoutMs: 1000, fall: 1, rise: 1 };
const addr = (port: number): { host: string; port: number } => ({ host: '127.0.0.1', port });

function reporting(): { authority: HealthAuthority; said: string[] } {
  const said: string[] = [];
  return {
    said,
    authority: {
      failure: (l, b, reason) => said.push(`failure ${l} ${b} ${reason}`),
      refusal: (l, b) => said.push(`refusal ${l} ${b}`),
      success: (l, b) => said.push(`success ${l} ${b}`),
    },
  };
}

test("a worker's pool reports failures to the primary and does not take a backend out itself (fall is the node's)", () => {
  const { authority, said } = reporting();
  const pool = new BackendPool('front', [addr(1), addr(2)], health, {}, logger, authority);
  const [b1] = pool.backends;
  pool.reportFailure(b1, 'refused', 'no');
  pool.reportFailure(b1, 'refused', 'no');
  pool.reportRefusal(b1, '421 busy');
  expect(said).toEqual(['failure front 127.0.0.1:1 refused', 'failure front 127.0.0.1:1 refused', 'refusal front 127.0.0.1:1']);
  expect(b1.up).toBe(true);
  expect(b1.failures).toBe(3);
  pool.setUp('127.0.0.1:1', false);
  expect(pool.healthyCount()).toBe(1);
  expect(pool.pick(new Set())).toBe(pool.backends[1]);
});

test('a success goes to the primary once after failures, not once per session', () => {
  const { authority, said } = reporting();
  const pool = new BackendPool('front', [addr(1)], health, {}, logger, authority);
  const [b] = pool.backends;
  pool.reportSuccess(b, false);
  expect(said).toEqual([]);
  pool.reportFailure(b, 'greeting_timeout', 'slow');
  pool.reportSuccess(b, false);
  pool.reportSuccess(b, false);
  expect(said).toEqual(['failure front 127.0.0.1:1 greeting_timeout', 'success front 127.0.0.1:1']);
});

test("a reload's backend list keeps the state of backends still listed; new ones start up", () => {
  const pool = new BackendPool('front', [addr(1), addr(2)], health, {}, logger);
  const [b1, b2] = pool.backends;
  pool.reportFailure(b2, 'refused', 'no');
  b2.served = 7;
  expect(b2.up).toBe(false);
  pool.setBackends([addr(2), addr(3)]);
  expect(pool.backends.map((b) => b.id)).toEqual(['127.0.0.1:2', '127.0.0.1:3']);
  expect(pool.backends[0]).toBe(b2);
  expect(pool.backends[0]).toMatchObject({ up: false, served: 7 });
  expect(pool.backends[1].up).toBe(true);
  expect(pool.backends).not.toContain(b1);
});
