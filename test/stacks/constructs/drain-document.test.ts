// The Volley-<env>-Drain SSM document: its shape in the template, its
// parameters' patterns (SSM pastes values into the script as text), and the
// script itself, run by bash as SSM would run it with a stand-in `volley`.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drainDocumentContent, drainDocumentName } from '../../../stacks/constructs/drain-document';
import { build, resources, template } from '../helpers';

interface Parameter {
  readonly allowedPattern?: string;
  readonly allowedValues?: string[];
  readonly default?: string;
}

const { config, stacks } = build('dev');
const documents = resources(template(stacks.mta), 'AWS::SSM::Document');
const content = drainDocumentContent({ envName: 'dev', drainPort: config.mta.drainPort });
const parameters = content.parameters as Record<string, Parameter>;
const step = (content.mainSteps as { inputs: { runCommand: string[]; timeoutSeconds: string } }[])[0];

test('the MTA tier has one Command document, Volley-<env>-Drain, updated in place on a deploy', () => {
  const docs = Object.values(documents);
  expect(docs).toHaveLength(1);
  expect(docs[0]?.Properties).toMatchObject({
    Name: drainDocumentName('dev'),
    DocumentType: 'Command',
    UpdateMethod: 'NewVersion',
    TargetType: '/AWS::EC2::Instance',
    Content: content,
  });
  expect(drainDocumentName('prod')).toBe('Volley-prod-Drain');
});

test('no instance role gains a permission for it: the operator sends the command with the destinations', () => {
  const policies = JSON.stringify(resources(template(stacks.mta), 'AWS::IAM::Policy'));
  expect(policies).not.toMatch(/ec2:DescribeInstances|ssm:SendCommand/);
});

describe('parameters admit no shell syntax', () => {
  const admits = (name: string, value: string): boolean => new RegExp(parameters[name]?.allowedPattern as string).test(value);

  test.each(['10.40.1.7', '10.40.1.7 10.40.17.9', '10.40.1.7:9443 ip-10-40-17-9.eu-west-1.compute.internal'])('destinations %p', (value) => {
    expect(admits('Destinations', value)).toBe(true);
  });
  test.each(['', '10.0.0.1; reboot', '$(reboot)', '`reboot`', "10.0.0.1' x", '10.0.0.1  10.0.0.2', '10.0.0.1\nreboot', ' 10.0.0.1'])('refused destinations %p', (value) => {
    expect(admits('Destinations', value)).toBe(false);
  });
  test('concurrency, max event wait, timeout: digits and a unit only', () => {
    expect(['', '10', '64'].every((v) => admits('Concurrency', v))).toBe(true);
    expect(['0', '100', '1;x', '-1'].some((v) => admits('Concurrency', v))).toBe(false);
    expect(['', '30m', '90s', '2h'].every((v) => admits('MaxEventWait', v))).toBe(true);
    expect(['30 m', '1$x', 'forever'].some((v) => admits('MaxEventWait', v))).toBe(false);
    expect(admits('ExecutionTimeout', '36000') && !admits('ExecutionTimeout', '1 2')).toBe(true);
    expect(parameters.WaitOnEvents?.allowedValues).toEqual(['yes', 'no']);
  });
});

describe('the script, run as SSM runs it', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'volley-drain-doc-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Substitutes the parameters as SSM does (text), points the paths into `dir`, runs bash. */
  function run(values: Record<string, string>, role = 'mta', exitCode = 0): { status: number | null; args: string[]; output: string; log: string } {
    writeFileSync(join(dir, 'instance.env'), `VOLLEY_ROLE=${role}\nVOLLEY_SLOT=dev-mta-eu-west-1a-1\nVOLLEY_PROXY_LINK_SECRET=arn:aws:secretsmanager:eu-west-1:1:secret:x\n`);
    const fake = join(dir, 'volley');
    // The stand-in prints each argument on its own line and ends with the drain's exit code.
    writeFileSync(fake, `#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\necho progress >&2\nexit ${exitCode}\n`);
    chmodSync(fake, 0o755);
    const all: Record<string, string> = { ...Object.fromEntries(Object.entries(parameters).map(([k, p]) => [k, p.default ?? ''])), ...values };
    const script = step.inputs.runCommand
      .join('\n')
      .replace(/\{\{ (\w+) \}\}/g, (_, name: string) => all[name] ?? '')
      .replaceAll('/etc/volley/instance.env', join(dir, 'instance.env'))
      .replaceAll('/opt/volley/bin/volley', fake)
      .replaceAll('/var/log/volley', join(dir, 'log'))
      .replaceAll('/etc/volley/admin.token', join(dir, 'admin.token'));
    const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    const logs = role === 'mta' ? readdirSync(join(dir, 'log')) : [];
    return {
      status: result.status,
      args: result.stdout.split('\n').filter((l) => l.startsWith('arg:')).map((l) => l.slice(4)),
      output: result.stdout + result.stderr,
      log: logs[0] ? readFileSync(join(dir, 'log', logs[0]), 'utf8') : '',
    };
  }

  test('runs volley drain --json with the config, the drain CA and every destination, adding the drain port where none is given', () => {
    const r = run({ Destinations: '10.40.1.7 10.40.17.9:9443' });
    expect(r.status).toBe(0);
    expect(r.args).toEqual(['drain', '--json', '--config', '/etc/volley/volley.yaml', '--ca-file', '/etc/volley/drain-ca.crt', `10.40.1.7:${config.mta.drainPort}`, '10.40.17.9:9443']);
    expect(r.output).toContain('volley drain of dev-mta-eu-west-1a-1');
    // The whole progress is kept on the instance too (SSM keeps only the first 24,000 characters).
    expect(r.log).toContain('arg:10.40.17.9:9443');
    expect(r.log).toContain('progress');
  });

  test('passes --concurrency, --max-event-wait and --no-wait-on-events when asked', () => {
    const r = run({ Destinations: '10.40.1.7', Concurrency: '32', MaxEventWait: '30m', WaitOnEvents: 'no' });
    expect(r.args).toEqual(['drain', '--json', '--config', '/etc/volley/volley.yaml', '--ca-file', '/etc/volley/drain-ca.crt', '--concurrency', '32', '--max-event-wait', '30m', '--no-wait-on-events', `10.40.1.7:${config.mta.drainPort}`]);
  });

  test('an admin token put on the instance is passed as --token-file; none, none passed', () => {
    writeFileSync(join(dir, 'admin.token'), 'operator-token');
    expect(run({ Destinations: '10.40.1.7' }).args).toEqual(expect.arrayContaining(['--token-file', join(dir, 'admin.token')]));
    rmSync(join(dir, 'admin.token'));
    expect(run({ Destinations: '10.40.1.7' }).args).not.toContain('--token-file');
  });

  test('the command\'s status is the drain\'s exit code, not tee\'s', () => {
    expect(run({ Destinations: '10.40.1.7' }, 'mta', 12).status).toBe(12);
    expect(run({ Destinations: '10.40.1.7' }, 'mta', 42).status).toBe(42);
  });

  test('refuses to run on an instance that is not an MTA', () => {
    const r = run({ Destinations: '10.40.1.7' }, 'proxy');
    expect(r.status).toBe(2);
    expect(r.args).toEqual([]);
    expect(r.output).toContain('not a Volley MTA');
  });
});
