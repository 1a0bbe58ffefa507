import pino, { type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  name?: string;
  /** Where the JSON lines go; stderr keeps stdout free for a CLI's own output. */
  destination?: number;
}

export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    { level: options.level ?? process.env.VOLLEY_LOG_LEVEL ?? 'info', name: options.name, base: { pid: process.pid } },
    pino.destination({ fd: options.destination ?? 2, sync: false }),
  );
}
