// Errors that carry a code, as smtp-server and pino do, so callers branch on
// `err.code` and logs stay greppable.
export class VolleyError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VolleyError';
    this.code = code;
  }
}

export function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
