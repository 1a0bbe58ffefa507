// The embedded sink keeps every message it is sent: a restart on the same
// folder numbers on after the previous run's files instead of overwriting them.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SinkServer } from '../../../runtime/sink/sink-server';
import { SmtpDialog } from '../../helpers/smtp-dialog';
import { tempDir } from '../../helpers/tmp';

async function send(port: number, subject: string): Promise<number> {
  const c = await SmtpDialog.open(port);
  expect((await c.reply()).code).toBe(220);
  await c.command('EHLO client.test');
  const r = await c.transaction('a@example.test', ['b@example.test'], `Subject: ${subject}\r\n\r\nbody\r\n`);
  await c.quit();
  return r.code;
}

const dirs = [tempDir(), tempDir()];

test('a second run on the same folder goes on numbering and leaves the first run\'s mail alone', async () => {
  const dir = dirs[0];
  // What an earlier run left, with a gap and a stray file.
  writeFileSync(join(dir, '00000001.eml'), 'Subject: old one\r\n\r\n');
  writeFileSync(join(dir, '00000007.eml'), 'Subject: old seven\r\n\r\n');
  writeFileSync(join(dir, 'notes.txt'), 'not mail');
  for (const subject of ['run one', 'run two']) {
    const sink = new SinkServer({ port: 0, dir });
    const port = await sink.listen();
    try {
      expect(await send(port, subject)).toBe(250);
    } finally {
      await sink.close();
    }
  }
  expect(readdirSync(dir).sort()).toEqual(['00000001.eml', '00000007.eml', '00000008.eml', '00000009.eml', 'notes.txt']);
  expect(readFileSync(join(dir, '00000001.eml'), 'utf8')).toContain('old one');
  expect(readFileSync(join(dir, '00000007.eml'), 'utf8')).toContain('old seven');
  expect(readFileSync(join(dir, '00000008.eml'), 'utf8')).toContain('Subject: run one');
  expect(readFileSync(join(dir, '00000009.eml'), 'utf8')).toContain('Subject: run two');
});

test('a file that appears under the next number is not replaced: the sink takes the one after', async () => {
  const dir = dirs[1];
  const sink = new SinkServer({ port: 0, dir });
  const port = await sink.listen();
  try {
    // Another writer (a second sink on the folder) got there after this one started.
    writeFileSync(join(dir, '00000001.eml'), 'Subject: theirs\r\n\r\n');
    expect(await send(port, 'mine')).toBe(250);
  } finally {
    await sink.close();
  }
  expect(readFileSync(join(dir, '00000001.eml'), 'utf8')).toContain('theirs');
  expect(readFileSync(join(dir, '00000002.eml'), 'utf8')).toContain('Subject: mine');
});
