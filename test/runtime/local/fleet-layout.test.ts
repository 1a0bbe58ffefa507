// The local fleet's ports: the README's by default, from a base, or free ones.
import { createServer } from 'node:net';
import { DEFAULT_LAYOUT, fleetLayout, PORTS_USED, type FleetLayout } from '../../../runtime/local/fleet-layout';

const ports = (l: FleetLayout): number[] => [l.lb.smtp, l.lb.http, l.lb.admin, ...l.mtas.flatMap((m) => [m.smtp, m.http, m.admin, m.drain]), ...l.proxies.flatMap((p) => [p.port, p.admin]), l.sink];

test('without --port-base: the fixed ports the README documents', async () => {
  const l = await fleetLayout(undefined);
  expect(l).toBe(DEFAULT_LAYOUT);
  expect(ports(l)).toEqual([2525, 8080, 8026, 2601, 8081, 8027, 8443, 2602, 8082, 8028, 8444, 7025, 7027, 7026, 7028, 2526]);
  expect(l.lb.source).toBe('127.0.0.9');
});

test('--port-base N: every port from N on, in order, and nothing else changes', async () => {
  const l = await fleetLayout('40000');
  expect(ports(l)).toEqual(Array.from({ length: PORTS_USED }, (_, i) => 40000 + i));
  expect(l.mtas.map((m) => m.name)).toEqual(['mta-1', 'mta-2']);
  expect(l.proxies.map((p) => [p.name, p.ips])).toEqual(DEFAULT_LAYOUT.proxies.map((p) => [p.name, p.ips]));
});

test('--port-base auto: distinct ports, each free to listen on', async () => {
  const l = await fleetLayout('auto');
  const all = ports(l);
  expect(new Set(all).size).toBe(PORTS_USED);
  for (const port of all) {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve());
    });
    await new Promise((r) => server.close(r));
  }
});

test.each(['0', '65530', 'x', '-1', '2525.5', ''])('--port-base %p is refused with a clear error', async (value) => {
  await expect(fleetLayout(value)).rejects.toMatchObject({ code: 'EBADFLAG', message: expect.stringContaining('--port-base') });
});
