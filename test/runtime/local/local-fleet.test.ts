import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VOLLEY } from '../../helpers/mta-process';
import { swaks } from '../../helpers/swaks';
import { tempDir } from '../../helpers/tmp';

// What a new user does after `npm install && npm start`: the same command,
// then swaks with the printed user, then Ctrl-C.
const data = tempDir();

test('volley local: swaks gets 250, the embedded sink receives the mail, Ctrl-C stops everything', async () => {
  const proc = spawn(process.execPath, [VOLLEY, 'local', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try {
    const until = Date.now() + 30_000;
    while (!out.includes('Ctrl-C stops everything')) {
      if (Date.now() > until || proc.exitCode !== null) throw new Error(`local fleet did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(out).toContain('SMTP injection : 127.0.0.1:2525');
    const r = await swaks(['--server', '127.0.0.1:2525', '--tls', '--auth-user', 'volley', '--auth-password', 'volley', '--from', 'me@example.test', '--to', 'someone@example.test', '--header', 'Subject: hello from the test']);
    expect(r.output).toMatch(/250 2\.0\.0 Ok: queued as/);
    const sink = join(data, 'sink');
    const end = Date.now() + 10_000;
    while (!(existsSync(sink) && readdirSync(sink).length > 0)) {
      if (Date.now() > end) throw new Error('the sink received nothing');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(readFileSync(join(sink, readdirSync(sink)[0]), 'utf8')).toContain('Subject: hello from the test');
  } finally {
    proc.kill('SIGINT');
  }
  expect(await exited).toBe(0);
  expect(out).toContain('volley local: stopped');
});
