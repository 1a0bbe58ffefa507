import { spawn } from 'node:child_process';

/** Runs swaks without blocking the event loop (the server under test may live in this process). */
export function swaks(args: string[], timeoutMs = 20_000): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('swaks', [...args, '--timeout', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}
