import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// Two behaviours of smtp-server 3.21 that an injection MTA cannot live with,
// changed in one place (checked against 3.21.6; revisit on upgrade):
//
// 1. It picks the enhanced status code from the basic code alone (554 is always
//    5.6.0), but a relay refusal must say 5.7.1 and a full disk 4.3.1. Replies
//    whose text already starts with an enhanced code are sent as they are.
// 2. It holds every greeting 100 ms to catch "early talkers" (an inbound-MX
//    spam defence). Injectors open a connection per message, so that delay
//    alone caps 20 sessions at 200 messages/s. The delay is an option here
//    (`greetingDelayMs`, 0 for injection listeners).
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
type Send = (code: number, data?: string | string[], context?: string | false) => void;
interface Internals {
  send: Send;
  init: () => void;
  _setListeners: (done: () => void) => void;
  connectionReady: () => void;
  _server: { options: { maxClients?: number; greetingDelayMs?: number }; connections: Set<unknown> };
  name: string;
  __volleyPatched?: boolean;
}
const proto = SMTPConnection.prototype as unknown as Internals;

export function installSmtpServerPatches(): void {
  if (proto.__volleyPatched) return;
  const send = proto.send;
  proto.send = function (this: Internals, code, data, context) {
    send.call(this, code, data, typeof data === 'string' && ENHANCED.test(data) ? false : context);
  };
  proto.init = function (this: Internals) {
    this._setListeners(() => {
      const { maxClients, greetingDelayMs = 100 } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      if (greetingDelayMs <= 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), greetingDelayMs).unref();
    });
  };
  proto.__volleyPatched = true;
}

/** An error smtp-server turns into a reply: `code enhanced text`. */
export function smtpError(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}
