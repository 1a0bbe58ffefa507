// What leaves this repo for AWS: the packaged runtime and the synthesized
// templates. Both run here exactly as they would for a deploy; one file so
// the two never rebuild dist/volley.js at the same time.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { packageRuntime } from '../../bin/package-asset';

const ROOT = resolve(__dirname, '../..');

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => res(port));
    });
  });
}

/** The [Service] settings of a unit file (last value wins, as in systemd). */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) settings.set(match[1] as string, [...(settings.get(match[1] as string) ?? []), match[2] as string]);
  }
  return settings;
}

function envFile(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('packaged runtime', () => {
  let assetDir: string;
  let child: ChildProcess | undefined;

  beforeAll(() => {
    assetDir = packageRuntime({ repoRoot: ROOT, outDir: join(mkdtempSync(join(tmpdir(), 'volley-asset-')), 'opt-volley') });
  });

  afterEach(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('has the layout install.sh and the units expect, and no Volley config inside', () => {
    const files = readdirSync(assetDir, { recursive: true }).map(String).sort();
    for (const f of ['install.sh', 'bin/volley', 'bin/volley-config-sync', 'lib/volley.js', 'systemd/volley-bootstrap.service', 'systemd/volley-mta.service', 'systemd/volley-proxy.service', 'systemd/volley-config-sync.timer']) {
      expect(files).toContain(f);
    }
    // The config ships separately: inside the runtime asset it would roll instances on every config change.
    expect(files.filter((f) => f.endsWith('.yaml'))).toEqual([]);
  });

  test('the bundled runtime starts from the asset layout with the shipped unit\'s command line and reports ready', async () => {
    const unit = unitSettings(readFileSync(join(assetDir, 'systemd/volley-mta.service'), 'utf8'));
    const execStart = unit.get('ExecStart')?.[0] as string;
    expect(execStart).toBe('/opt/volley/bin/volley mta --config /etc/volley/volley.yaml --persistent-path /var/lib/volley');
    expect(unit.get('EnvironmentFile')).toEqual(['/etc/volley/instance.env']);

    // The instance's filesystem, rooted in a temp dir: /opt/volley is the asset, /etc/volley holds
    // the env file user data writes and the deployed config (the shipped dev config on free ports).
    const root = mkdtempSync(join(tmpdir(), 'volley-instance-'));
    const [smtp, submission, http, admin] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const config = parseDocument(readFileSync(join(ROOT, 'assets/config/volley.dev.yaml'), 'utf8'));
    config.setIn(['smtp', 'listeners', 0, 'port'], smtp);
    config.setIn(['smtp', 'listeners', 1, 'port'], submission);
    config.setIn(['http', 'port'], http);
    config.setIn(['admin', 'port'], admin);
    writeFileSync(join(root, 'volley.yaml'), config.toString());
    writeFileSync(join(root, 'instance.env'), 'VOLLEY_ROLE=mta\nVOLLEY_SLOT=dev-mta-eu-west-1a-1\nVOLLEY_NODE_ID=dev-mta-eu-west-1a-1\n');
    const persistent = join(root, 'var-lib-volley');
    execFileSync('mkdir', ['-p', persistent]);

    const relocate = (arg: string): string =>
      arg.replace(/^\/opt\/volley/, assetDir).replace('/etc/volley/volley.yaml', join(root, 'volley.yaml')).replace('/var/lib/volley', persistent);
    const [command, ...args] = execStart.split(/\s+/).map(relocate);
    const env = { ...process.env, ...envFile(readFileSync(join(root, 'instance.env'), 'utf8')), ...Object.fromEntries((unit.get('Environment') ?? []).map((e) => e.split('='))) };
    let output = '';
    child = spawn(command as string, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));

    const deadline = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < deadline && child.exitCode === null) {
      status = await fetch(`http://127.0.0.1:${admin}/readyz`).then((r) => r.status, () => 0);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (status !== 200) throw new Error(`volley mta never became ready (exit ${child.exitCode}):\n${output.slice(-3000)}`);
    // It really runs on the persistent path it was given.
    expect(readdirSync(persistent).length).toBeGreaterThan(0);
  });
});

describe('cdk synth offline', () => {
  test.each(['dev', 'staging', 'prod'])('%s synthesizes with no network and no credentials', (envName) => {
    const out = mkdtempSync(join(tmpdir(), `volley-cdk-${envName}-`));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: mkdtempSync(join(tmpdir(), 'volley-home-')), // no ~/.aws
      CDK_DISABLE_VERSION_CHECK: '1',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    };
    // A fresh network namespace: only a downed loopback, so any connection attempt fails.
    execFileSync('unshare', ['--net', '--', 'npx', '--no-install', 'cdk', 'synth', '-c', `env=${envName}`, '-o', out, '--quiet'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 120_000,
    });
    const templates = readdirSync(out).filter((f) => f.endsWith('.template.json')).sort();
    expect(templates).toEqual(['Dns', 'Ingress', 'Mta', 'Network', 'Proxy', 'Storage'].map((s) => `Volley-${envName}-${s}.template.json`));
    // The runtime asset staged for upload is the packaged layout.
    const mtaAssets = JSON.parse(readFileSync(join(out, `Volley-${envName}-Mta.assets.json`), 'utf8')) as { files: Record<string, { source: { path: string; packaging?: string } }> };
    const zipped = Object.values(mtaAssets.files).filter((f) => f.source.packaging === 'zip');
    expect(zipped).toHaveLength(1);
    expect(existsSync(join(out, zipped[0]?.source.path as string, 'systemd/volley-mta.service'))).toBe(true);
  });
});
