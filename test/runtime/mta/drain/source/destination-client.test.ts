// Drain destinations as an operator writes them.
import { DEFAULT_DRAIN_PORT, parseDestination } from '../../../../../runtime/mta/drain/source/destination-client';

test('host, host:port, [v6], [v6]:port; the default port otherwise', () => {
  expect(parseDestination('10.0.1.12')).toEqual({ label: `10.0.1.12:${DEFAULT_DRAIN_PORT}`, host: '10.0.1.12', port: DEFAULT_DRAIN_PORT });
  expect(parseDestination('mta-2.example:9443')).toEqual({ label: 'mta-2.example:9443', host: 'mta-2.example', port: 9443 });
  expect(parseDestination('[::1]')).toEqual({ label: `[::1]:${DEFAULT_DRAIN_PORT}`, host: '::1', port: DEFAULT_DRAIN_PORT });
  expect(parseDestination('[::1]:8444').port).toBe(8444);
});

test('anything else is a clear error with a code', () => {
  for (const bad of ['', 'a:b', 'host:70000', 'host:0', '::1', 'a b']) {
    expect(() => parseDestination(bad)).toThrow(expect.objectContaining({ code: 'EBADDEST' }));
  }
});
