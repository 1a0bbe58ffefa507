// The secondary's half of policy degrade: a sync primary that stops hearing
// from its secondary for sync_timeout goes on acknowledging mail alone. The
// secondary cannot tell that from a dead primary, so once it has heard
// nothing for longer than sync_timeout it assumes the worst and records
// durably that it is outdated (it may lack acknowledged mail): it is then
// never promoted automatically, and manually only with --force, until a
// catch-up clears it.
export interface OutdatedWatchOptions {
  timeoutMs: number;
  /** Whether the rule applies now (a secondary of a pair in sync mode with policy degrade, not yet outdated). */
  applies: () => boolean;
  /** When the primary was last heard (any frame, pings included); undefined: not since this daemon started. */
  lastContact: () => number | undefined;
  /** Records the outdated flag durably. */
  mark: (silentMs: number) => void;
  now?: () => number;
}

export class OutdatedWatch {
  private timer?: ReturnType<typeof setInterval>;
  private readonly startedAt: number;
  private readonly now: () => number;

  constructor(private readonly options: OutdatedWatchOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Checks four times per sync_timeout: the flag is set at most a quarter of it late. */
  start(): void {
    this.timer = setInterval(() => this.check(), Math.max(10, Math.floor(this.options.timeoutMs / 4)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  check(): void {
    if (!this.options.applies()) return;
    // A secondary started while cut off has heard nothing since it started.
    const silent = this.now() - (this.options.lastContact() ?? this.startedAt);
    if (silent > this.options.timeoutMs) this.options.mark(silent);
  }
}
