import { parseProxyConfig } from '../../../runtime/proxy/config';

const good = `
name: proxy-a
listen: 127.0.0.1:7625
tls: { cert: tls/proxy.crt, key: tls/proxy.key }
secret_file: proxy.secret
allow_from: [10.0.0.0/8, 127.0.0.1]
sending_ips: [127.0.0.2, 127.0.0.3]
idle_timeout: 45s
max_transactions_per_session: 50
mx_timeouts: { connect: 5s, greeting: 1m, tls: 20s }
`;

test('a full config parses, with paths relative to the file and durations in ms', () => {
  const c = parseProxyConfig(good, '/etc/volley/proxy.yaml');
  expect(c).toMatchObject({
    name: 'proxy-a',
    listen: { address: '127.0.0.1', port: 7625 },
    tls: { cert: '/etc/volley/tls/proxy.crt', key: '/etc/volley/tls/proxy.key' },
    secretFile: '/etc/volley/proxy.secret',
    allowFrom: ['10.0.0.0/8', '127.0.0.1'],
    sendingIps: ['127.0.0.2', '127.0.0.3'],
    idleTimeoutMs: 45_000,
    maxTransactionsPerSession: 50,
    handshakeTimeoutMs: 10_000,
    mxTimeouts: { connectMs: 5_000, greetingMs: 60_000, tlsMs: 20_000 },
    adminListen: { address: '127.0.0.1', port: 7626 }, // the default other parts of the fleet rely on
  });
  expect(parseProxyConfig(`${good}admin_listen: 127.0.0.1:9626\n`).adminListen).toEqual({ address: '127.0.0.1', port: 9626 });
  expect(parseProxyConfig(`${good}admin_listen: 9626\n`).adminListen).toEqual({ address: '127.0.0.1', port: 9626 }); // a bare port stays on loopback
});

test('previous_secret_file is optional (the default, <secret_file>.previous, is looked for when the secrets are loaded) and relative to the file', () => {
  expect(parseProxyConfig(good, '/etc/volley/proxy.yaml').previousSecretFile).toBeUndefined();
  expect(parseProxyConfig(`${good}previous_secret_file: old/proxy.secret\n`, '/etc/volley/proxy.yaml').previousSecretFile).toBe('/etc/volley/old/proxy.secret');
  expect(() => parseProxyConfig(`${good}previous_secret_file: ""\n`, 'p.yaml')).toThrow('p.yaml: previous_secret_file: a file path is required');
});

test('every problem is reported at once', () => {
  const bad = `
listen: nowhere
sending_ips: [not-an-ip]
allow_from: [10.0.0.0/99]
idle_timeout: soon
max_transactions_per_session: 0
mx_timeouts: { forever: 1s }
colour: blue
admin_listen: everywhere
log_level: loud
`;
  let message = '';
  try {
    parseProxyConfig(bad, 'p.yaml');
  } catch (err) {
    message = (err as Error).message;
  }
  for (const field of ['listen:', 'tls:', 'sending_ips: "not-an-ip"', 'allow_from:', 'idle_timeout:', 'max_transactions_per_session:', 'mx_timeouts.forever:', 'colour: unknown', 'admin_listen: expected address:port', 'log_level: one of']) {
    expect(message).toContain(`p.yaml: ${field}`);
  }
});

test('mx_tls_ca_file: absent by default (Node store only), relative to the file when given', () => {
  expect(parseProxyConfig(good, '/etc/volley/proxy.yaml').mxTlsCaFile).toBeUndefined();
  expect(parseProxyConfig(`${good}mx_tls_ca_file: mx-ca.pem\n`, '/etc/volley/proxy.yaml').mxTlsCaFile).toBe('/etc/volley/mx-ca.pem');
  expect(() => parseProxyConfig(`${good}mx_tls_ca_file: ""\n`, '/etc/volley/proxy.yaml')).toThrow(/mx_tls_ca_file: a file path is required/);
});
