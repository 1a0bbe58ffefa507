import { ConfigError, parseConfig } from '../../../../runtime/shared/config/load';
import { deliveryConfigYaml } from '../../../helpers/config';

const parse = (yaml: string) => parseConfig(deliveryConfigYaml(yaml), 'tls.yaml');

test('defaults: auto everywhere, MTA-STS fetched within 10 s and 64 KB, TLS-RPT off', () => {
  const c = parse('');
  expect(c.delivery.tlsPolicy).toBe('auto');
  expect(c.tlsPolicies).toEqual([]);
  expect(c.mtaSts).toEqual({ caFile: undefined, fetchTimeoutMs: 10_000, maxPolicySize: 65_536 });
  expect(c.tlsRpt).toMatchObject({ enabled: false, from: 'noreply-smtp-tls-reporting@mta.test.example', postTimeoutMs: 30_000 });
});

test('the ladder per domain and as the default; the old names are aliases (required=encrypt, opportunistic=may, never=none)', () => {
  const c = parse(`delivery: { tls_policy: required }
tls_policies:
  - { domain: A.example, policy: opportunistic }
  - { domain: b.example, policy: never }
  - { domain: c.example, policy: dane }
  - { domain: d.example, policy: mta-sts }
  - { domain: e.example, policy: verify }
`);
  expect(c.delivery.tlsPolicy).toBe('encrypt');
  expect(c.tlsPolicies).toEqual([
    { domain: 'a.example', policy: 'may' },
    { domain: 'b.example', policy: 'none' },
    { domain: 'c.example', policy: 'dane' },
    { domain: 'd.example', policy: 'mta-sts' },
    { domain: 'e.example', policy: 'verify' },
  ]);
});

test('an unknown policy name is refused with its line and the names allowed', () => {
  expect(() => parse('tls_policies:\n  - { domain: a.example, policy: strict }\n')).toThrow(/tls\.yaml:\d+:\d+: tls_policies\[0\]\.policy: must be one of auto, dane, mta-sts, verify, encrypt, may, none, required, opportunistic, never/);
});

test('TLS-RPT enabled needs who we are; sizes and durations are checked', () => {
  let err: unknown;
  try {
    parse('tls_rpt: { enabled: true }\nmta_sts: { fetch_timeout: soon }\n');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const messages = (err as ConfigError).issues.map((i) => `${i.field}: ${i.message}`);
  expect(messages).toEqual(expect.arrayContaining(['tls_rpt: needs organization_name when enabled', 'tls_rpt: needs contact_info when enabled', expect.stringMatching(/^mta_sts\.fetch_timeout: /)]));
  const ok = parse('tls_rpt: { enabled: true, organization_name: Example ESP, contact_info: tls@esp.example, from: rpt@esp.example }\nmta_sts: { max_policy_size: 16KB, ca_file: /etc/volley/ca.pem }\n');
  expect(ok.tlsRpt).toMatchObject({ enabled: true, organizationName: 'Example ESP', contactInfo: 'tls@esp.example', from: 'rpt@esp.example' });
  expect(ok.mtaSts).toMatchObject({ maxPolicySize: 16_384, caFile: '/etc/volley/ca.pem' });
});

test('delivery.tls_ca_file: absent by default (Node store only), a path when given', () => {
  expect(parse('').delivery.tlsCaFile).toBeUndefined();
  expect(parse('delivery: { tls_ca_file: /etc/volley/mx-ca.pem }\n').delivery.tlsCaFile).toBe('/etc/volley/mx-ca.pem');
  expect(() => parse('delivery: { tls_ca_file: "" }\n')).toThrow(/delivery\.tls_ca_file/);
});

test('resolver.dnssec: off by default; on, it needs the validating resolver named in resolver.servers', () => {
  expect(parse('').resolver).toEqual({ servers: [], dnssec: false });
  expect(parse('resolver: { servers: ["127.0.0.1:5353"], dnssec: true }\n').resolver).toEqual({ servers: ['127.0.0.1:5353'], dnssec: true });
  let err: unknown;
  try {
    parse('resolver: { dnssec: true }\n');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).issues.map((i) => `${i.field}: ${i.message}`)).toEqual(['resolver.dnssec: needs resolver.servers: the validating resolver whose AD bit DANE trusts']);
});
