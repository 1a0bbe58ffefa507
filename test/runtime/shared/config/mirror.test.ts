// The MTA config's `mirror` section: mode sync, its socket and timeout, read
// with their defaults; a bad mode or timeout is refused by name.
import { parseConfig } from '../../../../runtime/shared/config/load';

const BASE = 'hostname: mta.example.test\n';

test('mirror: absent, async by default, sync with its socket and timeout', () => {
  expect(parseConfig(BASE).mirror).toBeUndefined();
  expect(parseConfig(`${BASE}mirror: {}\n`).mirror).toEqual({ mode: 'async', timeoutMs: 5000 });
  expect(parseConfig(`${BASE}mirror: { mode: sync, sync_socket: /run/volley/sync.sock, timeout: 3s }\n`).mirror).toEqual({ mode: 'sync', syncSocket: '/run/volley/sync.sock', timeoutMs: 3000 });
});

test('mirror: a mode or a timeout it cannot use is an error that names it', () => {
  expect(() => parseConfig(`${BASE}mirror: { mode: mirrored }\n`)).toThrow(/mirror/);
  expect(() => parseConfig(`${BASE}mirror: { mode: sync, timeout: soon }\n`)).toThrow(/mirror\.timeout|mirror\/timeout|timeout/);
  expect(() => parseConfig(`${BASE}mirror: { sync: true }\n`)).toThrow(/mirror/);
});
