import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testConfigYaml } from '../helpers/config';
import { VOLLEY } from '../helpers/mta-process';
import { tempDir } from '../helpers/tmp';

const dir = tempDir();

test('volley config check passes a good file', () => {
  const file = join(dir, 'good.yaml');
  writeFileSync(file, testConfigYaml());
  const r = spawnSync(process.execPath, [VOLLEY, 'config', 'check', file], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/good\.yaml: ok \(1 VMTAs, 1 pools, 1 users\)/);
});

test('volley config check exits 1 naming the file, line and field', () => {
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'hostname: a.example\nsmtp:\n  listeners:\n    - { name: smtp, port: 99999 }\n');
  const r = spawnSync(process.execPath, [VOLLEY, 'config', 'check', file], { encoding: 'utf8' });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain(`${file}:4:21: smtp.listeners[0].port: must be <= 65535`);
});

test('volley config check refuses a field that is accepted but not implemented, naming it', () => {
  const file = join(dir, 'unimplemented.yaml');
  writeFileSync(file, testConfigYaml().replace('  max_recipients: 5\n', '  max_recipients: 5\n  greeting_delay: 2s\n'));
  const r = spawnSync(process.execPath, [VOLLEY, 'config', 'check', file], { encoding: 'utf8' });
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/unimplemented\.yaml:\d+:3: smtp\.greeting_delay: "greeting_delay" is not implemented yet \(.+\): remove it/);
});

test('every config shipped in assets/config passes volley config check', () => {
  const configs = join(__dirname, '..', '..', 'assets', 'config');
  for (const f of readdirSync(configs).filter((n) => n.endsWith('.yaml'))) {
    const r = spawnSync(process.execPath, [VOLLEY, 'config', 'check', join(configs, f)], { encoding: 'utf8' });
    expect({ f, status: r.status, stderr: r.stderr }).toEqual({ f, status: 0, stderr: '' });
  }
});
