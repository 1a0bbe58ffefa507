// The node's durable {role, epoch}: a fresh node is a secondary of epoch 0,
// a write survives a re-read, and a damaged file is a clear error.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readState, statePath, writeState } from '../../../runtime/mirror/state';
import { tempDir } from '../../helpers/tmp';

describe('mirror state', () => {
  const root = tempDir('volley-mirror-state-');

  it('starts as a secondary of epoch 0 and keeps what was written', () => {
    expect(readState(root)).toEqual({ role: 'secondary', epoch: 0, caughtUp: false });
    writeState(root, { role: 'primary', epoch: 7, caughtUp: true, peerOutdated: true });
    expect(readState(root)).toEqual({ role: 'primary', epoch: 7, caughtUp: true, outdated: false, peerOutdated: true });
    writeState(root, { role: 'secondary', epoch: 7, caughtUp: false, outdated: true });
    expect(readState(root)).toMatchObject({ role: 'secondary', outdated: true, peerOutdated: false });
    // Written through a temporary file renamed into place: none is left behind.
    expect(readdirSync(join(root, 'mirror'))).toEqual(['state.json']);
  });

  it('refuses a damaged state file instead of guessing a role', () => {
    const other = join(root, 'damaged');
    mkdirSync(join(other, 'mirror'), { recursive: true });
    writeFileSync(statePath(other), '{"role":"boss","epoch":1}');
    expect(() => readState(other)).toThrow(expect.objectContaining({ code: 'EMIRRORSTATE' }));
    writeFileSync(statePath(other), 'not json');
    expect(() => readState(other)).toThrow(expect.objectContaining({ code: 'EMIRRORSTATE' }));
  });
});
