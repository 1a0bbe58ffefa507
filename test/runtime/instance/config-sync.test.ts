// volley config sync, with the SDK clients mocked: the MTAs' config through
// the S3 URL their parameter holds, a proxy's inline, installed atomically
// only when it changed, the role's unit reloaded only when it runs; bad
// instance.env and failed fetches change nothing and say why.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ConfigSyncDeps, mirrorSyncSettings, parseInstanceEnv, roleCheck, syncConfig, syncSettings } from '../../../runtime/instance/config-sync';
import { testConfigYaml } from '../../helpers/config';
import { tempDir } from '../../helpers/tmp';

const ssm = mockClient(SSMClient);
const s3 = mockClient(S3Client);
afterEach(() => {
  ssm.reset();
  s3.reset();
});
afterAll(() => {
  ssm.restore();
  s3.restore();
});

const etc = tempDir('volley-config-sync-');
// The part of the SDK's streaming body the sync reads.
const body = (text: string) => ({ transformToByteArray: async () => new Uint8Array(Buffer.from(text)) }) as never;

/** The unit tests' files are fragments; `roleCheck` is tested on its own below. */
function deps(active: boolean, reloadStatus = 0, check: ConfigSyncDeps['check'] = () => undefined): ConfigSyncDeps & { calls: string[]; lines: string[] } {
  const calls: string[] = [];
  const lines: string[] = [];
  return {
    ssm: new SSMClient({ region: 'eu-west-1' }),
    s3: new S3Client({ region: 'eu-west-1' }),
    systemctl: async (args) => {
      calls.push(args.join(' '));
      if (args[0] === 'is-active') return active ? 0 : 3;
      return reloadStatus;
    },
    log: (l) => lines.push(l),
    check,
    calls,
    lines,
  };
}

const MTA_ENV = 'VOLLEY_ROLE=mta\nVOLLEY_REGION=eu-west-1\nVOLLEY_CONFIG_PARAMETER=/volley/dev/mta/config-url\nVOLLEY_CONFIG_SOURCE=s3-url\nVOLLEY_CONFIG_FILE=/etc/volley/volley.yaml\n';
const PROXY_ENV = 'VOLLEY_ROLE=proxy\nVOLLEY_REGION=eu-west-1\nVOLLEY_CONFIG_PARAMETER=/volley/dev/proxy/proxy-a1/config\nVOLLEY_CONFIG_SOURCE=inline\nVOLLEY_CONFIG_FILE=/etc/volley/proxy.yaml\n';

test('MTA: fetches the S3 object the parameter names, installs it 0644 and reloads the running unit; the same config again does nothing', async () => {
  const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
  expect(settings.target).toBe(join(etc, 'volley.yaml'));
  ssm.on(GetParameterCommand, { Name: '/volley/dev/mta/config-url' }).resolves({ Parameter: { Value: 's3://cdk-assets-1/abc.yaml' } });
  s3.on(GetObjectCommand, { Bucket: 'cdk-assets-1', Key: 'abc.yaml' }).callsFake(() => ({ Body: body('hostname: a\n') }));
  const d = deps(true);
  await expect(syncConfig(settings, d)).resolves.toEqual({ installed: true, reloaded: true, from: 's3://cdk-assets-1/abc.yaml' });
  expect(readFileSync(settings.target, 'utf8')).toBe('hostname: a\n');
  expect(statSync(settings.target).mode & 0o777).toBe(0o644);
  expect(d.calls).toEqual(['is-active --quiet volley-mta.service', 'reload-or-restart volley-mta.service']);
  expect(readdirSync(etc).filter((n) => n.includes('partial'))).toEqual([]);

  const again = deps(true);
  await expect(syncConfig(settings, again)).resolves.toMatchObject({ installed: false, reloaded: false });
  expect(again.calls).toEqual([]);
});

test('proxy: the parameter is the file (one trailing newline, as `aws ... --output text` wrote it); a unit not running is left alone', async () => {
  const settings = syncSettings(parseInstanceEnv(PROXY_ENV), etc);
  ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'name: proxy-a1' } });
  const d = deps(false);
  await expect(syncConfig(settings, d)).resolves.toEqual({ installed: true, reloaded: false, from: '/volley/dev/proxy/proxy-a1/config' });
  expect(readFileSync(join(etc, 'proxy.yaml'), 'utf8')).toBe('name: proxy-a1\n');
  expect(d.calls).toEqual(['is-active --quiet volley-proxy.service']);
});

test('a failed fetch or a parameter that is not an S3 URL leaves the installed config as it was, and reloads nothing', async () => {
  const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
  writeFileSync(settings.target, 'hostname: kept\n');
  ssm.on(GetParameterCommand).rejects(new Error('AccessDeniedException'));
  const d = deps(true);
  await expect(syncConfig(settings, d)).rejects.toThrow('AccessDeniedException');
  ssm.reset();
  ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'https://example.com/x.yaml' } });
  await expect(syncConfig(settings, d)).rejects.toMatchObject({ code: 'ECONFIGSYNC', message: expect.stringContaining('s3:// URL') });
  expect(readFileSync(settings.target, 'utf8')).toBe('hostname: kept\n');
  expect(d.calls).toEqual([]);
});

test('a failed reload is an error naming the unit; the new file stays installed for the next try', async () => {
  const settings = syncSettings(parseInstanceEnv(PROXY_ENV), etc);
  ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'name: proxy-a1\nchanged: yes' } });
  await expect(syncConfig(settings, deps(true, 1))).rejects.toMatchObject({ code: 'ECONFIGSYNC', message: expect.stringContaining('reload-or-restart volley-proxy.service failed (1)') });
  expect(readFileSync(settings.target, 'utf8')).toBe('name: proxy-a1\nchanged: yes\n');
});

test('instance.env problems are refused by name', () => {
  expect(() => parseInstanceEnv('VOLLEY_ROLE=mta\nnot a line\n')).toThrow(expect.objectContaining({ code: 'EINSTANCEENV', message: 'instance.env: not KEY=value: "not a line"' }));
  expect(() => syncSettings(parseInstanceEnv('VOLLEY_ROLE=mta\nVOLLEY_REGION=eu-west-1\n'), etc)).toThrow('instance.env: VOLLEY_CONFIG_PARAMETER is missing');
  expect(() => syncSettings(parseInstanceEnv(MTA_ENV.replace('VOLLEY_ROLE=mta', 'VOLLEY_ROLE=lb')), etc)).toThrow('VOLLEY_ROLE must be mta or proxy (got "lb")');
  expect(() => syncSettings(parseInstanceEnv(MTA_ENV.replace('s3-url', 'http')), etc)).toThrow('VOLLEY_CONFIG_SOURCE must be s3-url or inline (got "http")');
});

test('a config its daemon would refuse is not installed: the sync fails saying why, nothing is reloaded, and the next tick tries again', async () => {
  const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
  writeFileSync(settings.target, 'hostname: running\n');
  ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 's3://cdk-assets-1/bad.yaml' } });
  s3.on(GetObjectCommand).callsFake(() => ({ Body: body('hostname: a\nsmtp: { max_recipients: many }\n') }));
  const d = deps(true, 0, roleCheck('mta'));
  await expect(syncConfig(settings, d)).rejects.toMatchObject({ code: 'ECONFIGSYNC', message: expect.stringMatching(/refused by the mta's loader[\s\S]*max_recipients/) });
  expect(readFileSync(settings.target, 'utf8')).toBe('hostname: running\n');
  expect(d.calls).toEqual([]);
  // The same file again is still new to the sync (not installed), so it is checked and refused again.
  await expect(syncConfig(settings, d)).rejects.toMatchObject({ code: 'ECONFIGSYNC' });
});

test("roleCheck is each daemon's own loader: an MTA config passes the MTA's and fails the proxy's, and the other way round", () => {
  const mta = testConfigYaml();
  const proxy = 'name: proxy-a1\nlisten: 10.0.0.7:7625\ntls: { cert: /etc/volley/proxy.crt, key: /etc/volley/proxy.key }\nsecret_file: /etc/volley/proxy.secret\nsending_ips: [203.0.113.10]\n';
  expect(() => roleCheck('mta')(mta, 'volley.yaml')).not.toThrow();
  expect(() => roleCheck('proxy')(proxy, 'proxy.yaml')).not.toThrow();
  expect(() => roleCheck('proxy')(mta, 'proxy.yaml')).toThrow();
  expect(() => roleCheck('mta')(proxy, 'volley.yaml')).toThrow();
});

describe('a node of an HA pair: its mirror config too', () => {
  const PAIR_ENV = `${MTA_ENV}VOLLEY_MIRROR_CONFIG=/etc/volley/mirror.yaml\nVOLLEY_MIRROR_CONFIG_PARAMETER=/volley/staging/mirror/staging-mta-eu-west-1a-1-b/config\n`;
  const MIRROR = 'persistent_path: /var/lib/volley\nlisten: 10.50.32.5:7627\npeer: 10.50.16.4:7627\ntls: { cert: /etc/volley/mirror.crt, key: /etc/volley/mirror.key }\npeer_ca: /etc/volley/mirror-ca.crt\nsecret_file: /etc/volley/mirror.secret\n';

  test('is read from its own parameter (inline), installed as mirror.yaml, and the running mirror is restarted on a change', async () => {
    const settings = mirrorSyncSettings(parseInstanceEnv(PAIR_ENV), etc);
    expect(settings).toEqual({ role: 'mirror', region: 'eu-west-1', parameter: '/volley/staging/mirror/staging-mta-eu-west-1a-1-b/config', source: 'inline', target: join(etc, 'mirror.yaml') });
    ssm.on(GetParameterCommand, { Name: '/volley/staging/mirror/staging-mta-eu-west-1a-1-b/config' }).resolves({ Parameter: { Value: MIRROR } });
    const d = deps(true, 0, roleCheck('mirror'));
    await expect(syncConfig(settings as NonNullable<typeof settings>, d)).resolves.toMatchObject({ installed: true, reloaded: true });
    expect(readFileSync(join(etc, 'mirror.yaml'), 'utf8')).toBe(MIRROR);
    expect(d.calls).toEqual(['is-active --quiet volley-mirror.service', 'reload-or-restart volley-mirror.service']);
  });

  // volley-mirror.service has no ExecReload: reload-or-restart restarts it, and on a pair in sync mode a restart
  // is 451s (block) or unreplicated mail (degrade) for its length.
  test('a mirror config that differs only in text (header, comments, key order, a default written out) is installed, and the running mirror is not restarted', async () => {
    const settings = mirrorSyncSettings(parseInstanceEnv(PAIR_ENV), etc) as NonNullable<ReturnType<typeof mirrorSyncSettings>>;
    writeFileSync(settings.target, MIRROR);
    // A new header, secret_file moved to the top, and mode at its default (async) written out.
    const sameSettings = `# Generated by cdk synth: regenerated with a new header\nsecret_file: /etc/volley/mirror.secret\n${MIRROR.replace('secret_file: /etc/volley/mirror.secret\n', '')}mode: async\n`;
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: sameSettings } });
    const d = deps(true, 0, roleCheck('mirror'));
    await expect(syncConfig(settings, d)).resolves.toEqual({ installed: true, reloaded: false, from: settings.parameter });
    expect(readFileSync(settings.target, 'utf8')).toBe(sameSettings);
    expect(d.calls).toEqual([]);
    expect(d.lines).toContainEqual(expect.stringContaining('volley-mirror.service is not restarted'));
  });

  test('a mirror config whose settings changed (sync_timeout), or replacing one its loader refuses, still restarts the running mirror: it cannot apply one live', async () => {
    const settings = mirrorSyncSettings(parseInstanceEnv(PAIR_ENV), etc) as NonNullable<ReturnType<typeof mirrorSyncSettings>>;
    const sync = `${MIRROR}mode: sync\nsync_timeout: 2s\n`;
    writeFileSync(settings.target, sync);
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: `${MIRROR}mode: sync\nsync_timeout: 5s\n` } });
    const d = deps(true, 0, roleCheck('mirror'));
    await expect(syncConfig(settings, d)).resolves.toMatchObject({ installed: true, reloaded: true });
    expect(d.calls).toEqual(['is-active --quiet volley-mirror.service', 'reload-or-restart volley-mirror.service']);

    writeFileSync(settings.target, `${MIRROR}mode: semi-sync\n`);
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: MIRROR } });
    const again = deps(true, 0, roleCheck('mirror'));
    await expect(syncConfig(settings, again)).resolves.toMatchObject({ installed: true, reloaded: true });
    expect(again.calls).toEqual(['is-active --quiet volley-mirror.service', 'reload-or-restart volley-mirror.service']);
  });

  test('is checked by the mirror\'s loader: a config it refuses is not installed', async () => {
    const settings = mirrorSyncSettings(parseInstanceEnv(PAIR_ENV), etc) as NonNullable<ReturnType<typeof mirrorSyncSettings>>;
    writeFileSync(settings.target, MIRROR);
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: `${MIRROR}mode: semi-sync\n` } });
    const d = deps(true, 0, roleCheck('mirror'));
    await expect(syncConfig(settings, d)).rejects.toMatchObject({ code: 'ECONFIGSYNC', message: expect.stringMatching(/refused by the mirror's loader[\s\S]*mode/) });
    expect(readFileSync(settings.target, 'utf8')).toBe(MIRROR);
    expect(d.calls).toEqual([]);
  });

  test('an instance that is not a node of a pair has no mirror config to sync', () => {
    expect(mirrorSyncSettings(parseInstanceEnv(MTA_ENV), etc)).toBeUndefined();
    expect(mirrorSyncSettings(parseInstanceEnv(PROXY_ENV), etc)).toBeUndefined();
  });
});

describe('the MTA\'s own secret files (mta.fileSecrets)', () => {
  const published = (text: string): void => {
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 's3://cdk-assets-1/files.yaml' } });
    s3.on(GetObjectCommand).callsFake(() => ({ Body: body(text) }));
  };

  test('are fetched before the config is checked: a config naming a new key finds it', async () => {
    const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
    writeFileSync(settings.target, 'hostname: old\n');
    published('hostname: new-key\n');
    const order: string[] = [];
    const d = { ...deps(true, 0, () => void order.push('check')), fetchFiles: async () => (order.push('files'), true) };
    await expect(syncConfig(settings, d)).resolves.toMatchObject({ installed: true, reloaded: true });
    expect(order).toEqual(['files', 'check']);
  });

  test('a changed file with an unchanged config reloads the running MTA; nothing changed reloads nothing', async () => {
    const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
    writeFileSync(settings.target, 'hostname: same\n');
    published('hostname: same\n');
    const changed = { ...deps(true), fetchFiles: async () => true };
    await expect(syncConfig(settings, changed)).resolves.toMatchObject({ installed: false, reloaded: true });
    expect(changed.calls).toEqual(['is-active --quiet volley-mta.service', 'reload-or-restart volley-mta.service']);
    const unchanged = { ...deps(true), fetchFiles: async () => false };
    await expect(syncConfig(settings, unchanged)).resolves.toMatchObject({ installed: false, reloaded: false });
    expect(unchanged.calls).toEqual([]);
    // An MTA that is not running reads them at its start.
    const stopped = { ...deps(false), fetchFiles: async () => true };
    await expect(syncConfig(settings, stopped)).resolves.toMatchObject({ installed: false, reloaded: false });
    expect(stopped.calls).toEqual(['is-active --quiet volley-mta.service']);
  });

  // The secrets are the operator's and change outside any deploy: one broken by hand must not hold back the deploy's config.
  const broken = (): Promise<boolean> => Promise.reject(new Error('secret volley/dev/keys: file "/etc/volley/x" is not under /etc/volley/secrets/'));

  test('a fetch that fails (a malformed secret) fails the tick, saying why, but the new config is still checked, installed and reloaded', async () => {
    const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
    writeFileSync(settings.target, 'hostname: kept\n');
    published('hostname: other\n');
    const checked: string[] = [];
    const d = { ...deps(true, 0, (text) => void checked.push(text)), fetchFiles: broken };
    await expect(syncConfig(settings, d)).rejects.toMatchObject({
      code: 'ECONFIGSYNC',
      message: `the MTA's secret files were not fetched, the files on disk stay (${settings.target} was installed from s3://cdk-assets-1/files.yaml): secret volley/dev/keys: file "/etc/volley/x" is not under /etc/volley/secrets/`,
    });
    expect(checked).toEqual(['hostname: other\n']);
    expect(readFileSync(settings.target, 'utf8')).toBe('hostname: other\n');
    expect(d.calls).toEqual(['is-active --quiet volley-mta.service', 'reload-or-restart volley-mta.service']);
    expect(d.lines[0]).toMatch(/^volley config sync: the MTA's secret files were not fetched \(the files on disk stay; the config is still synced\): secret volley\/dev\/keys/);
  });

  test('a fetch that fails with an unchanged config fails the tick and reloads nothing; a config the loader refuses is that error, the fetch\'s in the journal', async () => {
    const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
    writeFileSync(settings.target, 'hostname: same\n');
    published('hostname: same\n');
    const same = { ...deps(true), fetchFiles: broken };
    await expect(syncConfig(settings, same)).rejects.toThrow(`the files on disk stay (${settings.target} is unchanged): secret volley/dev/keys`);
    expect(same.calls).toEqual([]);
    // A config naming a file the fetch could not write is refused by the check, as any config naming a missing file.
    published('hostname: names-a-missing-key\n');
    const refused = { ...deps(true, 0, () => { throw new Error('dkim[0].private_key_file: cannot read /etc/volley/secrets/dkim/new.pem'); }), fetchFiles: broken };
    await expect(syncConfig(settings, refused)).rejects.toThrow(/refused by the mta's loader.*\n.*cannot read \/etc\/volley\/secrets\/dkim\/new\.pem/);
    expect(readFileSync(settings.target, 'utf8')).toBe('hostname: same\n');
    expect(refused.calls).toEqual([]);
    expect(refused.lines).toEqual([expect.stringContaining('secret files were not fetched')]);
  });

  test('the MTA\'s check refuses a config naming a secret file that is not on disk (or empty): one installed would fail the next MTA start', async () => {
    const secrets = join(etc, 'secrets-check');
    mkdirSync(join(secrets, 'dkim'), { recursive: true });
    const naming = testConfigYaml({ extra: 'dkim:\n  - { domain: example.com, selector: s2, private_key_file: /etc/volley/secrets/dkim/new.pem }\n' });
    expect(() => roleCheck('mta', secrets)(naming, 'volley.yaml')).toThrow('names secret files that are not on this instance (or empty): /etc/volley/secrets/dkim/new.pem; they come from the secrets of mta.fileSecrets');
    writeFileSync(join(secrets, 'dkim/new.pem'), '');
    expect(() => roleCheck('mta', secrets)(naming, 'volley.yaml')).toThrow('/etc/volley/secrets/dkim/new.pem');
    writeFileSync(join(secrets, 'dkim/new.pem'), 'KEY\n');
    expect(() => roleCheck('mta', secrets)(naming, 'volley.yaml')).not.toThrow();

    // In a sync whose fetch failed: the config naming the file it did not bring stays out, the tick fails.
    rmSync(join(secrets, 'dkim/new.pem'));
    const settings = syncSettings(parseInstanceEnv(MTA_ENV), etc);
    writeFileSync(settings.target, 'hostname: kept\n');
    published(naming);
    const d = { ...deps(true, 0, roleCheck('mta', secrets)), fetchFiles: broken };
    await expect(syncConfig(settings, d)).rejects.toThrow(/refused by the mta's loader[\s\S]*names secret files that are not on this instance/);
    expect(readFileSync(settings.target, 'utf8')).toBe('hostname: kept\n');
    expect(d.calls).toEqual([]);
  });
});
