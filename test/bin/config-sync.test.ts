// volley-config-sync is how a deployed config reaches running nodes. Run the
// shipped script with stand-ins for the aws CLI and systemctl on PATH.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const SCRIPT = resolve(__dirname, '../../assets/bin/volley-config-sync');

function world(active: boolean, instanceEnv = 'VOLLEY_ROLE=mta\nVOLLEY_REGION=eu-west-1\nVOLLEY_CONFIG_PARAMETER=/volley/dev/mta/config-url\n') {
  const dir = mkdtempSync(join(tmpdir(), 'volley-sync-'));
  const etc = join(dir, 'etc');
  const bin = join(dir, 'bin');
  const published = join(dir, 'published.yaml');
  const calls = join(dir, 'calls.log');
  execFileSync('mkdir', ['-p', etc, bin]);
  writeFileSync(join(etc, 'instance.env'), instanceEnv);
  // aws: ssm get-parameter prints the URL (or, for an inline parameter, the
  // "published" file itself); s3 cp copies the "published" object.
  const ssm = instanceEnv.includes('VOLLEY_CONFIG_SOURCE=inline') ? `cat ${published}` : 'echo s3://assets/config-abc.yaml';
  writeFileSync(
    join(bin, 'aws'),
    `#!/bin/bash\necho "aws $*" >> ${calls}\ncase "$1" in\n  ssm) ${ssm} ;;\n  s3) for a in "$@"; do last=$a; done; cp ${published} "$last" ;;\nesac\n`,
  );
  writeFileSync(join(bin, 'systemctl'), `#!/bin/bash\necho "systemctl $*" >> ${calls}\n[ "$1" = is-active ] && exit ${active ? 0 : 3}\nexit 0\n`);
  chmodSync(join(bin, 'aws'), 0o755);
  chmodSync(join(bin, 'systemctl'), 0o755);
  const run = (): void => {
    execFileSync(SCRIPT, { env: { PATH: `${bin}:/usr/bin:/bin`, VOLLEY_ETC: etc }, stdio: 'pipe' });
  };
  const log = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []);
  return { etc, published, run, log };
}

test('a newly published config is installed and the running MTA reloaded; an unchanged one is left alone', () => {
  const w = world(true);
  writeFileSync(w.published, 'hostname: mta.dev.mail.example.com\n');
  w.run();
  expect(readFileSync(join(w.etc, 'volley.yaml'), 'utf8')).toBe('hostname: mta.dev.mail.example.com\n');
  expect(w.log()).toContain('systemctl reload-or-restart volley-mta.service');
  expect(w.log()[0]).toBe('aws ssm get-parameter --region eu-west-1 --name /volley/dev/mta/config-url --query Parameter.Value --output text');

  const before = w.log().length;
  w.run();
  expect(w.log().slice(before).filter((l) => l.startsWith('systemctl reload'))).toEqual([]);

  writeFileSync(w.published, 'hostname: mta2.dev.mail.example.com\n');
  w.run();
  expect(readFileSync(join(w.etc, 'volley.yaml'), 'utf8')).toBe('hostname: mta2.dev.mail.example.com\n');
  expect(w.log().filter((l) => l === 'systemctl reload-or-restart volley-mta.service')).toHaveLength(2);
});

test('before the daemon runs (first boot), the config is installed without a reload', () => {
  const w = world(false);
  writeFileSync(w.published, 'hostname: a.example.com\n');
  w.run();
  expect(existsSync(join(w.etc, 'volley.yaml'))).toBe(true);
  expect(w.log().some((l) => l.startsWith('systemctl reload'))).toBe(false);
});

test('a proxy installs its own config from its inline parameter as proxy.yaml and is reloaded (SIGHUP)', () => {
  const w = world(true, 'VOLLEY_ROLE=proxy\nVOLLEY_REGION=eu-west-1\nVOLLEY_CONFIG_PARAMETER=/volley/dev/proxy/proxy-a1/config\nVOLLEY_CONFIG_SOURCE=inline\nVOLLEY_CONFIG_FILE=/etc/volley/proxy.yaml\n');
  writeFileSync(w.published, 'name: proxy-a1\nlisten: 10.40.0.10:7025\n');
  w.run();
  expect(readFileSync(join(w.etc, 'proxy.yaml'), 'utf8')).toBe('name: proxy-a1\nlisten: 10.40.0.10:7025\n');
  expect(existsSync(join(w.etc, 'volley.yaml'))).toBe(false);
  expect(w.log()[0]).toBe('aws ssm get-parameter --region eu-west-1 --name /volley/dev/proxy/proxy-a1/config --query Parameter.Value --output text');
  expect(w.log().some((l) => l.startsWith('aws s3'))).toBe(false);
  expect(w.log()).toContain('systemctl reload-or-restart volley-proxy.service');

  const before = w.log().length;
  w.run();
  expect(w.log().slice(before).filter((l) => l.startsWith('systemctl reload'))).toEqual([]);
});
