import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../../../runtime/shared/config/load';
import { testConfigYaml } from '../../../helpers/config';

function issuesOf(text: string): { line: number; field: string; message: string }[] {
  try {
    parseConfig(text, 'bad.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('config was accepted');
}

describe('config', () => {
  test('the shipped local and example configs and the test config load, with defaults filled in', () => {
    const local = parseConfig(readFileSync(join(__dirname, '../../../../assets/config/local.yaml'), 'utf8'));
    expect(local.smtp.listeners[0]).toEqual({ name: 'smtp', port: 2525, address: '127.0.0.1', tls: 'starttls', requireAuth: false });
    expect(local.delivery.retryMs[0]).toBe(10_000);
    expect(local.delivery.maxLifetimeMs).toBe(2 * 86_400_000);
    const example = parseConfig(readFileSync(join(__dirname, '../../../../assets/config/example.yaml'), 'utf8'));
    expect(example.pools[0].vmtas).toEqual([{ name: 'ip-a', weight: 2 }, { name: 'ip-b', weight: 1 }]);
    expect(example.drain).toMatchObject({ listen: { port: 8443 }, acceptFrom: ['10.0.0.0/16'], dedupeRetentionMs: 7 * 86_400_000 });
    const t = parseConfig(testConfigYaml());
    expect(t.smtp.maxMessageSize).toBe(64 * 1024);
    expect(t.spool.fsync).toBe(true);
  });

  test('an unknown field is named with its line', () => {
    const text = 'hostname: a.example\nsmtp:\n  listeners: []\n  max_mesage_size: 10MB\n';
    expect(issuesOf(text)).toEqual([{ file: 'bad.yaml', line: 4, column: 3, field: 'smtp.max_mesage_size', message: 'unknown field "max_mesage_size"' }]);
  });

  test('a wrong type inside a list is named by path and line', () => {
    const text = 'hostname: a.example\nsmtp:\n  listeners:\n    - name: a\n      port: 25\n    - name: b\n      port: twenty-five\n';
    const [issue] = issuesOf(text);
    expect(issue).toMatchObject({ line: 7, field: 'smtp.listeners[1].port', message: 'must be integer' });
  });

  test('references, units and addresses are checked after the schema, every problem at once', () => {
    const text = [
      'hostname: a.example',
      'vmtas:',
      '  - { name: v1, ip: 300.1.1.1, helo: v1.example }',
      'pools:',
      '  - { name: p1, vmtas: [{ name: v2 }] }',
      'default_pool: nope',
      'delivery:',
      '  retry: [5 minutes]',
      'smtp:',
      '  relay_from: [10.0.0.0/33]',
    ].join('\n');
    const issues = issuesOf(text);
    expect(issues.map((i) => [i.line, i.field]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
      [3, 'vmtas[0].ip'],
      [5, 'pools[0].vmtas[0].name'],
      [6, 'default_pool'],
      [8, 'delivery.retry[0]'],
      [10, 'smtp.relay_from[0]'],
    ]);
  });

  test('spool.min_free is a size or a percentage of the volume (default 2%), spool.reserve a size (default 64MB)', () => {
    const withSpool = (v?: string): string => `hostname: a.example\n${v === undefined ? '' : `spool:\n  ${v}\n`}`;
    expect(parseConfig(withSpool()).spool).toMatchObject({ minFree: { percent: 2 }, reserve: 64 * 1024 * 1024 });
    expect(parseConfig(withSpool('min_free: 5%')).spool.minFree).toEqual({ percent: 5 });
    expect(parseConfig(withSpool('min_free: 0.5 %')).spool.minFree).toEqual({ percent: 0.5 });
    expect(parseConfig(withSpool('min_free: 1GB')).spool.minFree).toEqual({ bytes: 1024 ** 3 });
    expect(parseConfig(withSpool('min_free: 0')).spool.minFree).toEqual({ bytes: 0 });
    expect(parseConfig(withSpool('reserve: 8MB')).spool.reserve).toBe(8 * 1024 * 1024);
    expect(issuesOf(withSpool('min_free: 100%'))).toEqual([expect.objectContaining({ line: 3, field: 'spool.min_free', message: '"100%" is not a percentage below 100' })]);
    expect(issuesOf(withSpool('min_free: lots'))).toEqual([expect.objectContaining({ line: 3, field: 'spool.min_free' })]);
  });

  test('the attempt log commits every 10 ms unless told otherwise; 0 is the next turn; a negative value or more than a second is refused', () => {
    const withInterval = (v?: string): string => `hostname: a.example\n${v === undefined ? '' : `events:\n  attempt_log:\n    commit_interval: ${v}\n`}`;
    expect(parseConfig(withInterval()).events.attemptLog.commitIntervalMs).toBe(10);
    expect(parseConfig(withInterval('0')).events.attemptLog.commitIntervalMs).toBe(0);
    expect(parseConfig(withInterval('250ms')).events.attemptLog.commitIntervalMs).toBe(250);
    expect(parseConfig(withInterval('1s')).events.attemptLog.commitIntervalMs).toBe(1000);
    expect(issuesOf(withInterval('5s'))).toEqual([expect.objectContaining({ line: 4, field: 'events.attempt_log.commit_interval', message: '5000 ms is too long: at most 1s' })]);
    expect(issuesOf(withInterval('-5'))).toEqual([expect.objectContaining({ line: 4, field: 'events.attempt_log.commit_interval', message: 'must not be negative' })]);
  });

  test("MX limits per delivery default to Postfix's (5 addresses, 2 sessions); 0 lifts them; a negative one is refused", () => {
    const withDelivery = (v?: string): string => `hostname: a.example\n${v === undefined ? '' : `delivery:\n  ${v}\n`}`;
    expect(parseConfig(withDelivery()).delivery).toMatchObject({ mxAddressLimit: 5, mxSessionLimit: 2 });
    expect(parseConfig(withDelivery('mx_address_limit: 0')).delivery).toMatchObject({ mxAddressLimit: 0, mxSessionLimit: 2 });
    expect(parseConfig(withDelivery('mx_session_limit: 3')).delivery).toMatchObject({ mxAddressLimit: 5, mxSessionLimit: 3 });
    expect(issuesOf(withDelivery('mx_session_limit: -1'))).toEqual([expect.objectContaining({ line: 3, field: 'delivery.mx_session_limit' })]);
  });

  test('broken YAML is reported with its line', () => {
    const [issue] = issuesOf('hostname: a.example\nsmtp: [unclosed\n');
    expect(issue.line).toBeGreaterThanOrEqual(2);
    expect(issue.message).toMatch(/^YAML: /);
  });

  test('a plain-text password is refused: only hashes belong in git', () => {
    const [issue] = issuesOf('hostname: a.example\nusers:\n  - { name: u, password: hunter2 }\n');
    expect(issue).toMatchObject({ line: 3, field: 'users[0].password', message: expect.stringMatching(/scrypt hash/) });
  });
});
