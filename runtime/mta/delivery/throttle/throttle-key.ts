// A throttle key: whose sending (a VMTA's name, or a sending IP) to which
// throttle destination. Typed so that nothing parses "source|destination"
// back (the proxy authority picks its proxy by `source`); `id` is the string
// the counts are kept under, and what crosses IPC and the proxy control link.

export interface ThrottleKey {
  /** The VMTA's name, or the sending IP when there is no VMTA. */
  readonly source: string;
  /** The throttle destination (a domain, or the MX group a rule names). */
  readonly destination: string;
  readonly id: string;
}

export function throttleKey(source: string, destination: string): ThrottleKey {
  return { source, destination, id: `${source}|${destination}` };
}
