// What leaves this repo for AWS: the packaged runtime and the synthesized
// templates. Both run here exactly as they would for a deploy; one file so
// the two never rebuild dist/volley.js at the same time.
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { DRAIN_FILE_DEFAULTS } from '../../bin/commands/drain-secret';
import { packageRuntime } from '../../bin/package-asset';
import { newProxyCa } from '../../runtime/bootstrap/proxy-link';
import { loadEnvironment } from '../../stacks/environments';
import { PROMOTE_COMMAND } from '../../stacks/mirror-topology';
import { INSTANCE_FILES, proxyConfigText } from '../../stacks/topology';
import { waitUntil } from '../helpers/proxy-fixtures';

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
    for (const f of ['install.sh', 'bin/volley', 'bin/volley-config-sync', 'lib/volley.js', 'systemd/volley-bootstrap.service', 'systemd/volley-mta.service', 'systemd/volley-proxy.service', 'systemd/volley-mirror.service', 'systemd/volley-config-sync.timer']) {
      expect(files).toContain(f);
    }
    // The config ships separately: inside the runtime asset it would roll instances on every config change.
    expect(files.filter((f) => f.endsWith('.yaml'))).toEqual([]);
  });

  test('the proxy unit starts the proxy with its own proxy.yaml, fetches the proxy-link files first, and reloads with SIGHUP (which the proxy handles)', () => {
    const unit = unitSettings(readFileSync(join(assetDir, 'systemd/volley-proxy.service'), 'utf8'));
    expect(unit.get('ExecStart')).toEqual(['/opt/volley/bin/volley proxy --config /etc/volley/proxy.yaml']);
    // As root ("+"): it writes /etc/volley and hands the files to the volley user.
    expect(unit.get('ExecStartPre')).toEqual(['+/opt/volley/bin/volley proxy-link fetch proxy --config /etc/volley/proxy.yaml']);
    expect(unit.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(unit.get('EnvironmentFile')).toEqual(['/etc/volley/instance.env']);
    const mta = unitSettings(readFileSync(join(assetDir, 'systemd/volley-mta.service'), 'utf8'));
    // Then the drain's secret, CA and certificate, to the files the generated config's drain section names.
    // First, as the daemon's user: on a node of an HA pair, refuse unless the mirror says primary (a no-op elsewhere).
    expect(mta.get('ExecStartPre')).toEqual([
      '/opt/volley/bin/volley bootstrap require-primary',
      '+/opt/volley/bin/volley proxy-link fetch mta --config /etc/volley/volley.yaml',
      '+/opt/volley/bin/volley drain-secret fetch --config /etc/volley/volley.yaml',
      // The operator's own files (mta.fileSecrets: DKIM keys, webhook secrets) before the MTA loads a config naming them.
      '+/opt/volley/bin/volley secret-files fetch',
    ]);
    // Its default paths are the ones the generated config and the SSM document name.
    expect(DRAIN_FILE_DEFAULTS).toEqual({ secretFile: INSTANCE_FILES.drainSecret, caFile: INSTANCE_FILES.drainCa, certFile: INSTANCE_FILES.drainCert, keyFile: INSTANCE_FILES.drainKey });
  });

  test('a node of an HA pair: the mirror unit fetches its secrets as root then runs as the MTA\'s user; install.sh lets it start the MTA with exactly its promote_command', () => {
    const unit = unitSettings(readFileSync(join(assetDir, 'systemd/volley-mirror.service'), 'utf8'));
    expect(unit.get('ExecStartPre')).toEqual([`+/opt/volley/bin/volley mirror-secret fetch --config ${INSTANCE_FILES.mirrorConfig}`]);
    expect(unit.get('ExecStart')).toEqual([`/opt/volley/bin/volley mirror --config ${INSTANCE_FILES.mirrorConfig}`]);
    expect(unit.get('User')).toEqual(['volley']);
    expect(unit.get('AssertPathIsMountPoint')).toEqual(['/var/lib/volley']);
    // sudo is setuid: with NoNewPrivileges the promotion could not start the MTA.
    expect(unit.get('NoNewPrivileges')).toBeUndefined();
    const install = readFileSync(join(assetDir, 'install.sh'), 'utf8');
    const rule = /^volley ALL=\(root\) NOPASSWD: (.+)$/m.exec(install)?.[1];
    expect(rule).toBe(PROMOTE_COMMAND.slice(2).join(' '));
    expect(PROMOTE_COMMAND.slice(0, 2)).toEqual(['/usr/bin/sudo', '-n']);
    // Only on a node of a pair: the rule is written when instance.env names a mirror config.
    expect(install).toMatch(/if grep -q '\^VOLLEY_MIRROR_CONFIG=' \/etc\/volley\/instance.env; then\n[\s\S]*volley ALL=\(root\)[\s\S]*\nfi\n/);
  });

  test('the packaged proxy unit, run as shipped against a stand-in Secrets Manager, serves a certificate for its listen IP from the environment CA', async () => {
    const unit = unitSettings(readFileSync(join(assetDir, 'systemd/volley-proxy.service'), 'utf8'));
    const root = mkdtempSync(join(tmpdir(), 'volley-proxy-instance-'));
    const port = await freePort();
    // The dev proxy's generated config (what the stack publishes), moved onto loopback: its listen IP, its sending IPs, /etc/volley.
    const dev = loadEnvironment('dev', ROOT);
    const proxy = dev.proxy.proxies[0] as (typeof dev.proxy.proxies)[number];
    let config = proxyConfigText(dev, proxy).replace(`${proxy.interfaceIp}:${dev.proxy.port}`, `127.0.0.1:${port}`).replaceAll('/etc/volley/', `${root}/`);
    proxy.sendingIps.forEach((ip, i) => (config = config.replace(ip, `127.0.0.${i + 2}`)));
    const doc = parseDocument(config);
    expect(doc.get('allow_from')).toBeDefined();
    doc.set('allow_from', ['127.0.0.0/8']); // the MTA subnets, here
    writeFileSync(join(root, 'proxy.yaml'), doc.toString());

    // Secrets Manager's GetSecretValue, as the SDK speaks it, holding what init leaves: the generated secret and the CA.
    const ca = await newProxyCa('dev');
    const secretId = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:volley/dev/proxy-link-AbCdEf';
    const asked: string[] = [];
    const secretsManager: Server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        asked.push(`${String(req.headers['x-amz-target'])} ${(JSON.parse(body) as { SecretId: string }).SecretId}`);
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        res.end(JSON.stringify({ ARN: secretId, Name: 'volley/dev/proxy-link', SecretString: JSON.stringify({ secret: 'S'.repeat(64), ca_cert: ca.cert, ca_key: ca.key }) }));
      });
    });
    await new Promise<void>((r) => secretsManager.listen(0, '127.0.0.1', r));
    try {
      const env = {
        ...process.env,
        VOLLEY_PROXY_LINK_SECRET: secretId,
        VOLLEY_REGION: 'eu-west-1',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${(secretsManager.address() as { port: number }).port}`,
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'example',
        AWS_EC2_METADATA_DISABLED: 'true',
      };
      const relocate = (arg: string): string => arg.replace(/^\+/, '').replace(/^\/opt\/volley/, assetDir).replace('/etc/volley/proxy.yaml', join(root, 'proxy.yaml'));
      // The files go to the user running this test: no volley user here.
      const [pre, ...preArgs] = (unit.get('ExecStartPre')?.[0] as string).split(/\s+/).map(relocate);
      // Asynchronously: the stand-in Secrets Manager answers from this very process.
      const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
      await new Promise<void>((resolvePre, rejectPre) =>
        execFile(pre as string, [...preArgs, '--user', user], { env }, (err, _out, stderr) => (err ? rejectPre(new Error(`${err.message}\n${stderr}`)) : resolvePre())),
      );
      expect(asked).toEqual([`secretsmanager.GetSecretValue ${secretId}`]);
      expect(readFileSync(join(root, 'proxy.secret'), 'utf8')).toBe('S'.repeat(64));

      const [command, ...args] = (unit.get('ExecStart')?.[0] as string).split(/\s+/).map(relocate);
      let output = '';
      child = spawn(command as string, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      // An MTA's check: dial the listen IP, trust only the environment's CA.
      let verified: boolean | undefined;
      let probing = false;
      const probe = (): void => {
        if (probing) return;
        probing = true;
        const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.cert, rejectUnauthorized: true });
        socket.once('secureConnect', () => ((verified = socket.authorized), socket.destroy()));
        socket.once('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ECONNREFUSED') {
            verified = false;
            output += `\nprobe: ${err.code ?? err.message}`;
          }
          probing = false;
        });
        socket.once('close', () => (probing = false));
      };
      await waitUntil(() => (verified === undefined && child?.exitCode === null ? (probe(), false) : true), 30_000, () => output.slice(-3000));
      expect({ verified, exit: child.exitCode, output: verified ? '' : output.slice(-2000) }).toEqual({ verified: true, exit: null, output: '' });
    } finally {
      secretsManager.closeAllConnections();
      await new Promise((r) => secretsManager.close(r));
    }
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
    expect(templates).toEqual(['Dns', 'Ingress', 'Mta', 'Network', 'Proxy', 'Secrets', 'Storage'].map((s) => `Volley-${envName}-${s}.template.json`));
    // The runtime asset staged for upload is the packaged layout.
    const mtaAssets = JSON.parse(readFileSync(join(out, `Volley-${envName}-Mta.assets.json`), 'utf8')) as { files: Record<string, { source: { path: string; packaging?: string } }> };
    const zipped = Object.values(mtaAssets.files).filter((f) => f.source.packaging === 'zip');
    expect(zipped).toHaveLength(1);
    expect(existsSync(join(out, zipped[0]?.source.path as string, 'systemd/volley-mta.service'))).toBe(true);
  });
});
