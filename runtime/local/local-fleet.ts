import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SinkServer } from '../sink/sink-server';

export interface LocalFleetOptions {
  /** The `volley` entry point to run children with (this very script). */
  volleyScript: string;
  configPath: string;
  dataDir: string;
  sinkPort: number;
  /** Print a live status line (off when stdout is not a terminal). */
  live?: boolean;
}

/**
 * `npm start`: the whole system on one machine. Today: the embedded sink MX and
 * one MTA (as a child process, exactly as `volley mta` runs in production).
 * Ctrl-C stops everything it started.
 */
export async function runLocalFleet(options: LocalFleetOptions): Promise<void> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const sink = new SinkServer({ port: options.sinkPort, dir: join(dataDir, 'sink') });
  await sink.listen();

  const children: ChildProcess[] = [];
  const persistentPath = join(dataDir, 'mta-1');
  const mta = spawn(process.execPath, [options.volleyScript, 'mta', '--config', options.configPath, '--persistent-path', persistentPath, '--node-id', 'mta-1'], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  children.push(mta);
  const logFile = join(dataDir, 'mta-1.log');
  const { createWriteStream } = await import('node:fs');
  mta.stderr?.pipe(createWriteStream(logFile, { flags: 'a' }));

  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  mta.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`volley local: the MTA exited (${signal ?? code}); see ${logFile}\n`);
      void stop(1);
    }
  });

  const ready = await waitReady('http://127.0.0.1:8025/readyz', 30_000);
  if (!ready) {
    process.stderr.write(`volley local: the MTA did not become ready; see ${logFile}\n`);
    return stop(1);
  }
  process.stdout.write(
    [
      '',
      'Volley local fleet is running.',
      '  SMTP injection : 127.0.0.1:2525   (STARTTLS; AUTH user "volley" password "volley"; loopback may relay without AUTH)',
      '  HTTP API       : http://127.0.0.1:8080/v1/messages   (Authorization: Bearer local-token)',
      '  admin          : http://127.0.0.1:8025/queue  /metrics  /readyz',
      `  sink MX        : 127.0.0.1:${options.sinkPort}, copies in ${join(dataDir, 'sink')}`,
      `  attempt log    : ${join(persistentPath, 'log', 'attempts')}`,
      `  MTA log        : ${logFile}`,
      '',
      '  try: swaks --server 127.0.0.1:2525 --auth-user volley --auth-password volley --tls --to someone@example.test',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  timer = options.live
    ? setInterval(() => {
        void fetch('http://127.0.0.1:8025/queue')
          .then((r) => r.json() as Promise<{ queued: number }>)
          .then((q) => process.stdout.write(`\r queued ${q.queued}  delivered to sink ${sink.counts.messages}   `))
          .catch(() => undefined);
      }, 1000)
    : undefined;

  async function stop(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    if (timer) clearInterval(timer);
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    await sink.close();
    process.stdout.write('\nvolley local: stopped\n');
    process.exit(code);
  }
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

async function waitReady(url: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
