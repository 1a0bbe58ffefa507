// promote_command: what a node runs once it has become the primary (e.g.
// `systemctl start volley-mta`), as an argv without a shell, so no config
// value is ever interpreted by one. Its exit is logged; a failure leaves the
// node primary (the operator starts the MTA by hand) and is counted.
import { spawn } from 'node:child_process';
import type { Logger } from '../shared/log';

export interface PromoteRun {
  argv: string[];
  exit?: number | null;
  signal?: string | null;
  error?: string;
}

/** Runs `argv` for the primary of `epoch`; resolves with how it ended (never rejects). */
export function runPromoteCommand(argv: string[], epoch: number, logger: Logger): Promise<PromoteRun> {
  return new Promise((resolve) => {
    let output = '';
    const keep = (d: Buffer): void => {
      if (output.length < 4096) output += d.toString();
    };
    logger.info({ argv, epoch }, 'mirror: running promote_command');
    let child;
    try {
      child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VOLLEY_MIRROR_EPOCH: String(epoch) } });
    } catch (err) {
      logger.error({ argv, err: (err as Error).message }, 'mirror: promote_command could not start');
      return resolve({ argv, error: (err as Error).message });
    }
    // Heard before anything else: with no descriptor left for the pipes (EMFILE, ENFILE) the child has no stdout
    // or stderr at all, and its 'error' comes a tick later; reading them first threw, and the 'error' went unheard.
    child.once('error', (err) => {
      logger.error({ argv, err: err.message }, 'mirror: promote_command could not start');
      resolve({ argv, error: err.message });
    });
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    // 'exit', not 'close': a command that leaves a daemon behind holding its stdout has still finished.
    child.once('exit', (code, signal) => {
      child.stdout?.destroy();
      child.stderr?.destroy();
      const out = output.trim().slice(0, 4096);
      if (code === 0) logger.info({ argv, exit: code, output: out || undefined }, 'mirror: promote_command finished');
      else logger.error({ argv, exit: code, signal, output: out || undefined }, 'mirror: promote_command failed: start the MTA by hand');
      resolve({ argv, exit: code, signal });
    });
  });
}
