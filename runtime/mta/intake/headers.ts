// Control headers an injector may set; Volley reads and removes them before the
// message is stored, so they never reach a recipient.
export const CONTROL_PREFIX = 'x-volley-';

export interface ControlHeaders {
  pool?: string;
  vmta?: string;
  meta: Record<string, string>;
}

/**
 * Splits the header block off, removes X-Volley-* fields (with their folded
 * continuation lines) and returns what they said. The body bytes are not copied
 * when there is nothing to remove.
 */
export function extractControlHeaders(message: Buffer): { control: ControlHeaders; message: Buffer } {
  const control: ControlHeaders = { meta: {} };
  let end = message.indexOf('\r\n\r\n');
  if (end === -1) end = message.length;
  const head = message.toString('latin1', 0, end);
  if (!/^x-volley-/im.test(head)) return { control, message };
  const kept: string[] = [];
  let dropping = false;
  for (const line of head.split('\r\n')) {
    const continuation = line.startsWith(' ') || line.startsWith('\t');
    if (continuation) {
      if (!dropping) kept.push(line);
      continue;
    }
    dropping = line.toLowerCase().startsWith(CONTROL_PREFIX);
    if (!dropping) {
      kept.push(line);
      continue;
    }
    const colon = line.indexOf(':');
    const name = line.slice(CONTROL_PREFIX.length, colon === -1 ? undefined : colon).trim().toLowerCase();
    const value = colon === -1 ? '' : line.slice(colon + 1).trim();
    if (name === 'pool') control.pool = value;
    else if (name === 'vmta') control.vmta = value;
    else if (name.startsWith('meta-')) control.meta[name.slice(5)] = value;
  }
  const rest = message.subarray(end);
  return { control, message: Buffer.concat([Buffer.from(kept.join('\r\n'), 'latin1'), rest]) };
}

// Formatting a date costs more than the rest of the header; one string a second will do.
let dateSecond = 0;
let dateText = '';
function rfc5322Now(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString().replace('GMT', '+0000');
  }
  return dateText;
}

/**
 * Names the Volley message id in the message itself, so a bounce or a
 * complaint that quotes the original headers can be matched without VERP.
 * Any X-Volley-* field a client sent is removed before this one is added,
 * so there is exactly one and it is ours.
 */
export function volleyIdHeader(id: string): string {
  return `X-Volley-Id: ${id}\r\n`;
}

export function receivedHeader(opts: { helo?: string; ip?: string; by: string; protocol: string; id: string; rcpt?: string; date?: Date }): string {
  const from = opts.helo ? `from ${opts.helo} ([${opts.ip ?? 'unknown'}])` : `from [${opts.ip ?? 'unknown'}]`;
  const forPart = opts.rcpt ? `\r\n\tfor <${opts.rcpt}>` : '';
  return `Received: ${from}\r\n\tby ${opts.by} (Volley) with ${opts.protocol} id ${opts.id}${forPart};\r\n\t${opts.date ? opts.date.toUTCString().replace('GMT', '+0000') : rfc5322Now()}\r\n`;
}
