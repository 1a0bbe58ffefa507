// `volley bootstrap require-primary`, the first ExecStartPre of
// volley-mta.service: on a node of an HA pair (VOLLEY_MIRROR_CONFIG set, as
// instance.env sets it) the MTA starts only where the mirror's durable state
// says primary; on any other instance it does nothing. Runs the bundled CLI.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeState } from '../../../runtime/mirror/state';
import { VOLLEY } from '../../helpers/mta-process';
import { tempDir } from '../../helpers/tmp';

const base = tempDir('volley-require-primary-');

function requirePrimary(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const { VOLLEY_MIRROR_CONFIG: _unset, ...inherited } = process.env;
    execFile(process.execPath, [VOLLEY, 'bootstrap', 'require-primary'], { env: { ...inherited, ...env } }, (err, _stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

/** A node's persistent path and mirror config; `role` undefined: a volume that never ran a mirror. */
function node(role?: 'primary' | 'secondary'): string {
  const root = mkdtempSync(join(base, 'node-'));
  if (role) writeState(root, { role, epoch: 4, caughtUp: true });
  const config = join(root, 'mirror.yaml');
  writeFileSync(config, `persistent_path: ${root}\nlisten: 10.50.16.4:7627\npeer: 10.50.32.5:7627\ntls: { cert: m.crt, key: m.key }\npeer_ca: ca.crt\nsecret_file: m.secret\n`);
  return config;
}

test('on the primary of a pair: the MTA may start', async () => {
  expect(await requirePrimary({ VOLLEY_MIRROR_CONFIG: node('primary') })).toMatchObject({ code: 0 });
});

test('on the secondary, or a node that never ran a mirror: refused, saying why and what promotes it', async () => {
  for (const config of [node('secondary'), node(undefined)]) {
    const { code, stderr } = await requirePrimary({ VOLLEY_MIRROR_CONFIG: config });
    expect(code).not.toBe(0);
    expect(stderr).toContain('ENOTPRIMARY');
    expect(stderr).toContain('the secondary of its pair');
    expect(stderr).toContain('volley mirror promote');
  }
});

test('not a node of a pair (no VOLLEY_MIRROR_CONFIG): nothing to check', async () => {
  expect(await requirePrimary({})).toMatchObject({ code: 0 });
});
