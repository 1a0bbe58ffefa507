// The one [address:]port reading shared by the command-line flags and the
// proxy's config file: what it takes, what it refuses, and that both callers
// take and refuse the same text.
import { parseProxyConfig } from '../../../runtime/proxy/config';
import { parseHostPort, readHostPort } from '../../../runtime/shared/host-port';

test('address:port, [IPv6]:port, :port and a bare port (the default address then)', () => {
  expect(readHostPort('10.0.0.7:7625', '0.0.0.0')).toEqual({ address: '10.0.0.7', port: 7625 });
  expect(readHostPort('[::1]:25', '0.0.0.0')).toEqual({ address: '::1', port: 25 });
  expect(readHostPort('[2001:db8::7]:7625', '0.0.0.0')).toEqual({ address: '2001:db8::7', port: 7625 });
  expect(readHostPort(':2525', '0.0.0.0')).toEqual({ address: '0.0.0.0', port: 2525 });
  expect(readHostPort(7626, '127.0.0.1')).toEqual({ address: '127.0.0.1', port: 7626 });
  expect(readHostPort(' mta-1.internal:8025 ', '127.0.0.1')).toEqual({ address: 'mta-1.internal', port: 8025 });
  expect(readHostPort('127.0.0.1:0', '0.0.0.0')).toEqual({ address: '127.0.0.1', port: 0 });
});

const refused = ['::1:25', '[::1:25', '10.0.0.1]:25', '[10.0.0.1]:25', 'bad host:25', '10.0.0.1:70000', '10.0.0.1:', 'nowhere', '', 'a:b:25'];

test.each(refused)('%j is refused, not guessed at', (text) => {
  expect(readHostPort(text, '0.0.0.0')).toBeUndefined();
  expect(() => parseHostPort(text)).toThrow(expect.objectContaining({ code: 'EBADFLAG', message: expect.stringContaining(`"${text}" is not [address:]port`) }));
});

test('the proxy config reads listen and admin_listen the same way, naming the field', () => {
  const config = (listen: string): string => `listen: "${listen}"\ntls: { cert: c, key: k }\nsending_ips: [127.0.0.2]\n`;
  expect(parseProxyConfig(config('[::1]:7625')).listen).toEqual({ address: '::1', port: 7625 });
  for (const text of refused) expect(() => parseProxyConfig(config(text))).toThrow(/listen: expected address:port, e\.g\. 10\.0\.0\.7:7625/);
});
