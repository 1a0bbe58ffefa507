// `volley secret-files fetch` as volley-mta.service's ExecStartPre runs it
// (dist/volley.js, against the rehearsal's fake Secrets Manager on loopback):
// a start, so a secret the operator deleted keeps the files on disk with a
// warning and exit 0, and only a first boot with nothing on disk fails.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Endpoint, serve } from '../../rehearsal/fake-aws/http';
import { FakeSecretsManager } from '../../rehearsal/fake-aws/secrets-manager';
import { VOLLEY } from '../../helpers/mta-process';
import { tempDir } from '../../helpers/tmp';

const run = promisify(execFile);
const dir = tempDir('volley-secret-files-cli-');
const sm = new FakeSecretsManager('eu-west-1');
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(sm.handler);
});
afterAll(() => endpoint.close());

const ID = 'volley/dev/dkim-keys';

/** The command with --user root (this machine has no volley user); resolves to its exit status and stderr. */
async function fetch(secrets: string): Promise<{ status: number; stderr: string }> {
  const env = { PATH: process.env.PATH ?? '', AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint.url, AWS_ACCESS_KEY_ID: 'AKIDTESTSECRETFILES', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'eu-west-1', AWS_EC2_METADATA_DISABLED: 'true' };
  return run(process.execPath, [VOLLEY, 'secret-files', 'fetch', '--secret-id', ID, '--dir', secrets, '--user', 'root'], { env, encoding: 'utf8' }).then(
    (r) => ({ status: 0, stderr: r.stderr }),
    (e: { code?: number; stderr?: string }) => ({ status: e.code ?? -1, stderr: e.stderr ?? '' }),
  );
}

test('a secret deleted after the last fetch: the start goes on with the files on disk, warning; a first boot without files fails', async () => {
  const secrets = join(dir, 'secrets');
  sm.put(ID, JSON.stringify({ files: { '/etc/volley/secrets/dkim/a.pem': 'KEY\n' } }));
  expect(await fetch(secrets)).toEqual({ status: 0, stderr: 'volley secret-files: wrote dkim/a.pem\n' });
  sm.secrets.delete(ID);
  const kept = await fetch(secrets);
  expect(kept.status).toBe(0);
  expect(kept.stderr).toMatch(new RegExp(`^volley secret-files: warning: cannot read secret ${ID}: Secrets Manager can't find the specified secret\\. \\(secrets: ${ID}\\); starting with the files already on disk`));
  expect(readFileSync(join(secrets, 'dkim/a.pem'), 'utf8')).toBe('KEY\n');

  const fresh = await fetch(join(dir, 'first-boot'));
  expect(fresh.status).not.toBe(0);
  expect(fresh.stderr).toContain(`cannot read secret ${ID}: Secrets Manager can't find the specified secret.; the files on disk cannot be used instead: no earlier fetch`);
  expect(existsSync(join(dir, 'first-boot', 'dkim'))).toBe(false);
});
