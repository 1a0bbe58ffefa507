import { VmtaPicker } from '../../../../../runtime/mta/delivery/routing/vmta-picker';
import { parseConfig } from '../../../../../runtime/shared/config/load';

const config = parseConfig(`hostname: mta.example
vmtas:
  - { name: a, ip: 192.0.2.1, helo: a.example }
  - { name: b, ip: 192.0.2.2, helo: b.example }
  - { name: c, ip: 192.0.2.3, helo: c.example }
pools:
  - { name: shared, vmtas: [{ name: a, weight: 3 }, { name: b }] }
  - { name: vip, vmtas: [{ name: c }] }
default_pool: shared
routing:
  - { sender_domain: bank.example, pool: vip }
  - { sender_domain: one.example, vmta: b }
`);

test('a named VMTA wins, then a named pool, then the sender-domain rule, then the default pool (weighted)', () => {
  const p = new VmtaPicker(config);
  expect(p.pick({ from: 'x@shop.example', vmta: 'c' })).toMatchObject({ vmta: 'c', ip: '192.0.2.3', helo: 'c.example' });
  expect(p.pick({ from: 'x@bank.example', pool: 'shared' }, () => 0.9)).toMatchObject({ vmta: 'b', pool: 'shared' });
  expect(p.pick({ from: 'x@bank.example' })).toMatchObject({ vmta: 'c', pool: 'vip' });
  expect(p.pick({ from: 'x@one.example' })).toMatchObject({ vmta: 'b' });
  const counts = { a: 0, b: 0 } as Record<string, number>;
  for (let i = 0; i < 400; i++) counts[p.pick({ from: 'x@shop.example' }, () => i / 400).vmta!]++;
  expect(counts).toEqual({ a: 300, b: 100 });
});

test('with no VMTAs at all the OS picks the address and the HELO is the hostname', () => {
  const p = new VmtaPicker(parseConfig('hostname: solo.example\n'));
  expect(p.pick({ from: 'x@y.example' })).toEqual({ helo: 'solo.example' });
});
