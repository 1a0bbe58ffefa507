import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseHostPort, parseListen, readLbFile, resolveOptions } from '../../../runtime/lb/options';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir();

test('listen and backend addresses', () => {
  expect(parseListen('0.0.0.0:25=smtp')).toEqual({ address: '0.0.0.0', port: 25, mode: 'smtp' });
  expect(parseListen(':8080=tcp')).toEqual({ address: '0.0.0.0', port: 8080, mode: 'tcp' });
  expect(parseListen('[::]:25')).toEqual({ address: '::', port: 25, mode: 'smtp' });
  expect(parseHostPort('10.0.0.1:25')).toEqual({ host: '10.0.0.1', port: 25 });
  expect(parseListen('127.0.0.1:8080=tcp+proxy')).toEqual({ address: '127.0.0.1', port: 8080, mode: 'tcp', proxy: true });
  expect(() => parseListen('0.0.0.0:25=http')).toThrow(/smtp or tcp/);
  expect(() => parseListen('0.0.0.0:25=proxy')).toThrow(/smtp or tcp/);
  expect(() => parseHostPort('10.0.0.1:70000')).toThrow(/not \[host:\]port/);
});

test('a YAML file is validated (ajv) and flags win over it', () => {
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'proxyProtocol: true\nhealthCheck: { interval: 5s, fall: 4 }\nlisteners:\n  - name: smtp\n    listen: 0.0.0.0:25\n    backends: [10.0.0.1:25, 10.0.0.2:25]\n  - listen: 0.0.0.0:8080\n    mode: tcp\n    proxyProtocol: false\n    backends: [10.0.0.1:8080]\n');
  const o = resolveOptions({ fall: '2' }, readLbFile(good));
  expect(o.health).toEqual({ intervalMs: 5000, timeoutMs: 5000, fall: 2, rise: 2 });
  expect(o.listeners.map((l) => [l.name, l.mode, l.proxyProtocol, l.backends.length])).toEqual([
    ['smtp', 'smtp', true, 2],
    ['tcp-8080', 'tcp', false, 1],
  ]);
  expect(o.admin).toEqual({ host: '127.0.0.1', port: 8026 });
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'listeners:\n  - listen: 0.0.0.0:25\n    backends: []\nfal: 3\n');
  expect(() => readLbFile(bad)).toThrow(/must NOT have additional properties: fal/);
  expect(() => readLbFile(bad)).toThrow(/\/listeners\/0\/backends must NOT have fewer than 1 items/);
  expect(() => resolveOptions({})).toThrow(/no listener/);
});

test('the PROXY header per listener: +proxy turns it on for one, --proxy-protocol for all', () => {
  const listeners = [
    { listen: '127.0.0.1:25=smtp+proxy', backends: ['127.0.0.1:2601'] },
    { listen: '127.0.0.1:8080=tcp', backends: ['127.0.0.1:8081'] },
  ];
  expect(resolveOptions({ listeners }).listeners.map((l) => l.proxyProtocol)).toEqual([true, false]);
  expect(resolveOptions({ listeners, proxyProtocol: true }).listeners.map((l) => l.proxyProtocol)).toEqual([true, true]);
});

test('--source-address must be an IP address', () => {
  const listeners = [{ listen: '127.0.0.1:25', backends: ['127.0.0.1:2601'] }];
  expect(resolveOptions({ listeners, sourceAddress: '127.0.0.9' }).sourceAddress).toBe('127.0.0.9');
  expect(resolveOptions({ listeners }).sourceAddress).toBeUndefined();
  expect(() => resolveOptions({ listeners, sourceAddress: 'lb.example' })).toThrow(/source address "lb.example" is not an IP address/);
});
