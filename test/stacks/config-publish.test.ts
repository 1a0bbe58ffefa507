// A changed Volley config must reach nodes as a config refresh, never as an
// instance replacement: only the SSM parameter may change, not the launch template.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadEnvironment } from '../../stacks/environments';
import { build, FIXTURE_PACKAGE, REPO_ROOT, resources, template } from './helpers';

function launchTemplatesAndParameter(configFile: string, packageDir = FIXTURE_PACKAGE) {
  const config = { ...loadEnvironment('dev', REPO_ROOT), volleyConfigFile: relative(REPO_ROOT, configFile) };
  const t = template(build('dev', { config, packageDir, nag: false }).stacks.mta);
  return {
    launchTemplates: JSON.stringify(resources(t, 'AWS::EC2::LaunchTemplate')),
    parameter: JSON.stringify(resources(t, 'AWS::SSM::Parameter')),
  };
}

test('a config change changes the published parameter but not the launch templates; a runtime change rolls them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'volley-config-'));
  const original = readFileSync(join(REPO_ROOT, 'assets/config/volley.dev.yaml'), 'utf8');
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  writeFileSync(a, original);
  writeFileSync(b, original.replace('level: info', 'level: debug') + '\nlog: { level: debug }\n');

  const before = launchTemplatesAndParameter(a);
  const afterConfig = launchTemplatesAndParameter(b);
  expect(afterConfig.launchTemplates).toBe(before.launchTemplates);
  expect(afterConfig.parameter).not.toBe(before.parameter);

  const otherPackage = mkdtempSync(join(tmpdir(), 'volley-package-'));
  writeFileSync(join(otherPackage, 'volley.js'), '// a different runtime build\n');
  const afterRuntime = launchTemplatesAndParameter(a, otherPackage);
  expect(afterRuntime.launchTemplates).not.toBe(before.launchTemplates);
});
