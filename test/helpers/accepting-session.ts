// An in-process outbound session whose MX answers 250 to every recipient: for
// engine tests that need a destination and no network. The caller sees each
// send (to count it, hold it, or record its recipients; a send hook that
// throws fails the send and, as a lost proxy link does, leaves the session
// unusable) and each close.
import type { OutboundSession, Target } from '../../runtime/shared/smtp/connector';

export function acceptingSession(target: Target, helo: string, hooks: { via?: string; onSend?: (to: string[]) => unknown; onClose?: (wasUsable: boolean) => void } = {}): OutboundSession {
  const info = { mxHost: target.host, mxIp: target.ip, port: target.port, helo, via: hooks.via ?? 'test', connectMs: 0 };
  let usable = true;
  return {
    info,
    get usable() {
      return usable;
    },
    send: async (_from, to) => {
      try {
        await hooks.onSend?.(to);
      } catch (err) {
        usable = false;
        throw err;
      }
      return { recipients: to.map((rcpt) => ({ rcpt, reply: { code: 250, text: 'ok' }, outcome: 'delivered' as const })), envelopeMs: 0, dataMs: 0 };
    },
    close: () => {
      hooks.onClose?.(usable);
      usable = false;
    },
  };
}
