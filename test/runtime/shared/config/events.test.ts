import { ConfigError, parseConfig } from '../../../../runtime/shared/config/load';

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, 'bad.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.field}: ${i.message}`);
    throw err;
  }
  throw new Error('config was accepted');
}

const base = 'hostname: mta.example\nvmtas: [{ name: v, ip: 192.0.2.1, helo: mta.example }]\npools: [{ name: p, vmtas: [{ name: v }] }]\n';

describe('events and inbound config', () => {
  test('sinks get their defaults; no events section means no sinks', () => {
    expect(parseConfig(base).events).toEqual({ attemptLog: { maxSize: 100 * 1024 * 1024, maxAgeMs: 3_600_000, commitIntervalMs: 10 }, maxQueue: 2 * 1024 ** 3, sinks: [] });
    const c = parseConfig(
      `${base}events:\n  sinks:\n` +
        '    - { name: hooks, type: webhook, url: "https://hooks.example/volley", secret_files: [/etc/volley/whsec], filter: { kinds: [bounce], metadata: { tenant: a } } }\n' +
        '    - { name: acct, type: sqlite }\n' +
        '    - { name: lake, type: s3, bucket: logs-bucket, prefix: /volley/ }\n',
    );
    expect(c.events.sinks).toEqual([
      { type: 'webhook', name: 'hooks', filter: { kinds: ['bounce'], statuses: undefined, metadata: { tenant: ['a'] } }, url: 'https://hooks.example/volley', secretFiles: ['/etc/volley/whsec'], batchSize: 500, maxWaitMs: 1000, concurrency: 4, gzip: false, timeoutMs: 30_000, maxAgeMs: undefined, caFile: undefined, headers: {} },
      { type: 'sqlite', name: 'acct', filter: undefined, dir: undefined, maxSize: 256 * 1024 * 1024, maxAgeMs: 3_600_000 },
      { type: 's3', name: 'lake', bucket: 'logs-bucket', prefix: 'volley', region: undefined, endpoint: undefined, gzip: true, keepLocal: false, ship: ['events', 'sqlite'], intervalMs: 30_000 },
    ]);
    expect(c.inbound).toBeUndefined();
  });

  test('a webhook in clear text off loopback, duplicate sink names, two s3 sinks and a bad kind are refused by name', () => {
    const issues = issuesOf(
      `${base}events:\n  sinks:\n` +
        '    - { name: a, type: webhook, url: "http://hooks.example/", secret_files: [s] }\n' +
        '    - { name: a, type: sqlite }\n' +
        '    - { name: b, type: s3, bucket: bbb }\n    - { name: c, type: s3, bucket: ccc }\n',
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^events\.sinks\[0\]\.url: http:\/\/ only for a receiver on loopback/),
        'events.sinks[1].name: duplicate sink name "a"',
        'events.sinks: at most one s3 sink: a closed file is shipped once',
      ]),
    );
    expect(issuesOf(`${base}events:\n  sinks: [{ name: a, type: sqlite, filter: { kinds: [opened] } }]\n`).join('\n')).toMatch(/events\.sinks\[0\]/);
    expect(parseConfig(`${base}events:\n  sinks: [{ name: a, type: webhook, url: "http://127.0.0.1:9/", secret_files: [s] }]\n`).events.sinks).toHaveLength(1);
  });

  test('inbound: defaults, and a VERP domain that the listener would refuse is named', () => {
    const c = parseConfig(`${base}inbound:\n  domains: [Bounces.Example.com]\n  verp: { domain: bounces.example.com, secret_file: /etc/volley/verp }\n`);
    expect(c.inbound).toEqual({ address: '0.0.0.0', port: 25, domains: ['bounces.example.com'], maxMessageSize: 10 * 1024 * 1024, unmatchedMax: 256 * 1024 * 1024, maxReportRecipients: 1000, verp: { domain: 'bounces.example.com', prefix: 'bounce', secretFile: '/etc/volley/verp', pools: undefined } });
    expect(issuesOf(`${base}inbound:\n  domains: [fbl.example.com]\n  verp: { domain: bounces.example.com, secret_file: v, pools: [nope] }\n`)).toEqual(
      expect.arrayContaining(['inbound.verp.domain: "bounces.example.com" is not one of inbound.domains: its bounces would be refused', 'inbound.verp.pools[0]: no pool named "nope"']),
    );
  });

  test('inbound.max_report_recipients: default 1000, set, and a count below 1 named', () => {
    expect(parseConfig(`${base}inbound:\n  domains: [b.example.com]\n  max_report_recipients: 50\n`).inbound?.maxReportRecipients).toBe(50);
    expect(issuesOf(`${base}inbound:\n  domains: [b.example.com]\n  max_report_recipients: 0\n`).join('\n')).toMatch(/inbound\.max_report_recipients/);
    expect(issuesOf(`${base}inbound:\n  domains: [b.example.com]\n  max_report_recipients: many\n`).join('\n')).toMatch(/inbound\.max_report_recipients/);
  });
});
