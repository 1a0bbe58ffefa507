// The drain secret: from drain.secret_file or VOLLEY_DRAIN_SECRET, the
// previous one beside it during a rotation, and errors that name the drain.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDrainSecrets } from '../../../../runtime/mta/drain/secrets';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

afterEach(() => {
  delete process.env.VOLLEY_DRAIN_SECRET;
});

test('the file, then <file>.previous during a rotation', () => {
  const file = join(dir, 'drain.secret');
  writeFileSync(file, `${A}\n`);
  expect(loadDrainSecrets({ secretFile: file }).map(String)).toEqual([A]);
  writeFileSync(`${file}.previous`, B);
  expect(loadDrainSecrets({ secretFile: file }).map(String)).toEqual([A, B]);
});

test('an explicit previous_secret_file, and the environment when no file is set', () => {
  const prev = join(dir, 'old.secret');
  writeFileSync(prev, B);
  process.env.VOLLEY_DRAIN_SECRET = A;
  expect(loadDrainSecrets({ previousSecretFile: prev }).map(String)).toEqual([A, B]);
});

test('missing or short secrets are refused, naming the drain secret', () => {
  expect(() => loadDrainSecrets({})).toThrow(/no drain secret: set drain\.secret_file or VOLLEY_DRAIN_SECRET/);
  const short = join(dir, 'short.secret');
  writeFileSync(short, 'too-short');
  expect(() => loadDrainSecrets({ secretFile: short })).toThrow(/the drain secret has 9 bytes; it needs at least 32/);
});
