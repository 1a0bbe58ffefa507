// The shared topology generator: both configs it writes load in their own
// daemon's loader and describe the same link (address, sending IPs, secret, pin).
import { parseProxyConfig } from '../../../runtime/proxy/config';
import { parseConfig } from '../../../runtime/shared/config/load';
import { mtaProxiesSection, proxyConfigYaml, type ProxyNode } from '../../../runtime/shared/proxy-topology';
import { stringify } from 'yaml';

const nodes: ProxyNode[] = [
  { name: 'proxy-a', host: '10.0.0.7', port: 7625, sendingIps: ['203.0.113.10', '203.0.113.11'] },
  { name: 'proxy-b', host: '10.0.1.7', port: 7625, sendingIps: ['203.0.113.12'] },
];

test('a proxy config loads in the proxy\'s loader with the given files and sources', () => {
  const text = proxyConfigYaml(nodes[0] as ProxyNode, { cert: '/etc/volley/proxy.crt', key: '/etc/volley/proxy.key', secretFile: '/etc/volley/proxy.secret', allowFrom: ['10.0.16.0/20'] });
  expect(parseProxyConfig(text)).toMatchObject({
    name: 'proxy-a',
    listen: { address: '10.0.0.7', port: 7625 },
    tls: { cert: '/etc/volley/proxy.crt', key: '/etc/volley/proxy.key' },
    secretFile: '/etc/volley/proxy.secret',
    allowFrom: ['10.0.16.0/20'],
    sendingIps: ['203.0.113.10', '203.0.113.11'],
  });
  // No sources given: no allow_from line at all (the loader's "any").
  expect(proxyConfigYaml(nodes[1] as ProxyNode, { cert: '/c', key: '/k', secretFile: '/s' })).not.toContain('allow_from');
});

test('the MTAs\' proxies section loads in the MTA\'s loader, pinned by fingerprint or by CA', () => {
  const pins = new Map([['proxy-a', { fingerprint: 'AB:CD' }], ['proxy-b', { caFile: '/etc/volley/proxy-ca.crt' }]]);
  const section = mtaProxiesSection(nodes, '/etc/volley/proxy.secret', (n) => pins.get(n.name) as { fingerprint: string } | { caFile: string });
  const vmtas = nodes.flatMap((n) => n.sendingIps).map((ip, i) => ({ name: `ip${i + 1}`, ip, helo: `out${i + 1}.example.com` }));
  const config = parseConfig(stringify({ hostname: 'mta.example.com', vmtas, proxies: section }));
  expect(config.proxies).toEqual({
    secretFile: '/etc/volley/proxy.secret',
    servers: [
      { name: 'proxy-a', host: '10.0.0.7', port: 7625, fingerprint: 'AB:CD', caFile: undefined, sendingIps: ['203.0.113.10', '203.0.113.11'] },
      { name: 'proxy-b', host: '10.0.1.7', port: 7625, fingerprint: undefined, caFile: '/etc/volley/proxy-ca.crt', sendingIps: ['203.0.113.12'] },
    ],
  });
});
