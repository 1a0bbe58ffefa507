// A small stand-in for systemd: runs the units an instance installs
// (assets/systemd/*.service, *.timer) from the unit files themselves, with
// systemd's documented start, stop, reload and restart semantics, so the
// rehearsal tests the units and not a copy of them. What it does not do
// (cgroups, sandboxing, User=) is listed in test/rehearsal/README.md.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VolleyError } from '../../runtime/shared/errors';
import { signalAll, unitProcesses } from './process-tree';
import { realTimers, type Timers } from './timers';
import {
  commandArgv,
  type ExecCommand,
  parseEnvironmentFile,
  readUnitFile,
  serviceSpec,
  type ServiceSpec,
  timerSpec,
  type TimerSpec,
  type UnitFile,
} from './unit-file';

export type ActiveState = 'inactive' | 'activating' | 'active' | 'deactivating' | 'failed';

/** Why the main process ended, in systemd.service(5)'s terms ("Exit causes" table under Restart=). */
export type ExitCause = 'clean' | 'unclean-exit-code' | 'unclean-signal' | 'timeout';

export interface UnitStatus {
  readonly name: string;
  readonly state: ActiveState;
  readonly mainPid?: number;
  /** systemd's Result=: success, exit-code, signal, timeout, assert, exec. */
  readonly result: string;
  /** NRestarts=: automatic restarts by Restart=. */
  readonly restarts: number;
  readonly enabled: boolean;
  readonly lastExit?: { code: number | null; signal: NodeJS.Signals | null };
}

export interface UnitRunnerOptions {
  /** Where unit files are read from, in order (the instance's /etc/systemd/system). */
  readonly unitDirs: string[];
  /** The environment every unit starts from: systemd's DefaultEnvironment= (the rehearsal puts its endpoint variables here). */
  readonly environment?: Record<string, string>;
  /** Prefix for every command, e.g. ["ip", "netns", "exec", NAME]; it must exec, so the pid stays the process's. */
  readonly wrap?: string[];
  readonly timers?: Timers;
  /** Tells apart the processes of two runners on one host (part of the marker variable). */
  readonly id?: string;
  /**
   * The host path of a path as the instance sees it (its own mount namespace
   * binds other directories over /etc, /opt...): where EnvironmentFile= is
   * read. Assertions run through `wrap`, inside the instance's view.
   */
  readonly hostPath?: (path: string) => string;
}

const CLEAN_SIGNALS: NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE'];
const MARKER_VAR = 'VOLLEY_REHEARSAL_UNIT';
/** systemd's default for units: PATH only (systemd.exec(5), "Environment variables in spawned processes"). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** How often a stop looks in /proc for processes still alive (real time: processes die in real time). */
const SCAN_MS = 20;

interface Unit {
  file: UnitFile;
  kind: 'service' | 'timer';
  service?: ServiceSpec;
  timer?: TimerSpec;
  state: ActiveState;
  result: string;
  restarts: number;
  enabled: boolean;
  main?: ChildProcess;
  mainPid?: number;
  /** Set while the runner itself stops the unit: a death it causes never triggers Restart= (systemd.service(5)). */
  stopping: boolean;
  /** Set when a stop arrives while the unit is still starting: the start is abandoned, not failed. */
  cancelled: boolean;
  restartHandle?: unknown;
  timerHandle?: unknown;
  firedBoot: boolean;
  lastActivated?: number;
  lastExit?: { code: number | null; signal: NodeJS.Signals | null };
  journal: string[];
  /** The start in progress, so a second start joins it as a systemd start job would. */
  starting?: Promise<void>;
  mainExited?: Promise<void>;
}

/**
 * Whether Restart= restarts after `cause`. The table "Exit causes and the
 * effect of the Restart= settings" in systemd.service(5)
 * (https://manpages.ubuntu.com/manpages/jammy/en/man5/systemd.service.5.html):
 *   clean exit code or signal -> always, on-success
 *   unclean exit code         -> always, on-failure
 *   unclean signal            -> always, on-failure, on-abnormal, on-abort
 *   timeout                   -> always, on-failure, on-abnormal
 * "Clean" is exit code 0, or, for types other than Type=oneshot, one of
 * SIGHUP, SIGINT, SIGTERM or SIGPIPE, or a status in SuccessExitStatus=. So a
 * main process killed by SIGHUP is clean and Restart=on-failure does NOT
 * restart it; SIGKILL, SIGSEGV or SIGABRT are unclean and it does. A death
 * caused by a stop or restart the operator asked for never restarts.
 */
export function restartsAfter(policy: ServiceSpec['restart'], cause: ExitCause): boolean {
  switch (policy) {
    case 'always':
      return true;
    case 'on-success':
      return cause === 'clean';
    case 'on-failure':
      return cause !== 'clean';
    case 'on-abnormal':
      return cause === 'unclean-signal' || cause === 'timeout';
    case 'on-abort':
      return cause === 'unclean-signal';
    case 'no':
      return false;
  }
}

/**
 * Whether the unit restarts after its main process ended so: by Restart=, or
 * because RestartForceExitStatus= names that exit code or signal ("regardless
 * of the restart setting configured with Restart=", systemd.service(5)).
 */
export function restartsOnExit(spec: ServiceSpec, code: number | null, signal: NodeJS.Signals | null): boolean {
  const forced = signal ? spec.restartForceExitStatus.signals.includes(signal) : spec.restartForceExitStatus.codes.includes(code ?? -1);
  return forced || restartsAfter(spec.restart, exitCause(spec, code, signal));
}

export function exitCause(spec: ServiceSpec, code: number | null, signal: NodeJS.Signals | null): ExitCause {
  if (signal) {
    const clean = (spec.type !== 'oneshot' && CLEAN_SIGNALS.includes(signal)) || spec.successExitStatus.signals.includes(signal);
    return clean ? 'clean' : 'unclean-signal';
  }
  return code === 0 || spec.successExitStatus.codes.includes(code ?? -1) ? 'clean' : 'unclean-exit-code';
}

export class UnitRunner {
  private readonly units = new Map<string, Unit>();
  private readonly timers: Timers;
  private readonly bootAt: number;
  private readonly id: string;
  private closed = false;

  constructor(private readonly options: UnitRunnerOptions) {
    this.timers = options.timers ?? realTimers;
    this.bootAt = this.timers.now();
    this.id = options.id ?? `r${process.pid}`;
  }

  /** Re-reads every loaded unit file from disk (`systemctl daemon-reload`); running processes keep running. */
  daemonReload(): void {
    for (const unit of this.units.values()) {
      const file = readUnitFile(this.find(unit.file.name));
      Object.assign(unit, this.specs(file));
      unit.file = file;
    }
  }

  status(name: string): UnitStatus {
    const u = this.unit(name);
    return { name: u.file.name, state: u.state, mainPid: u.mainPid, result: u.result, restarts: u.restarts, enabled: u.enabled, lastExit: u.lastExit };
  }

  /** What the unit's processes wrote on stdout and stderr: the journal. */
  journal(name: string): string {
    return this.unit(name).journal.join('');
  }

  /** Every live process of the unit (main, its descendants, and anything that left the tree), as a cgroup would list them. */
  processes(name: string): number[] {
    const u = this.unit(name);
    return unitProcesses(u.mainPid ? [u.mainPid] : [], this.marker(u));
  }

  /** `systemctl enable`: WantedBy= is not modelled; `boot()` starts the enabled units. */
  enable(name: string): void {
    this.unit(name).enabled = true;
  }

  disable(name: string): void {
    this.unit(name).enabled = false;
  }

  /** Starts every enabled unit, as multi-user.target would. */
  async boot(): Promise<void> {
    for (const u of this.units.values()) if (u.enabled) await this.start(u.file.name);
  }

  async start(name: string): Promise<void> {
    const u = this.unit(name);
    if (u.starting) return u.starting;
    if (u.state === 'active') return;
    if (u.restartHandle !== undefined) {
      this.timers.clearTimeout(u.restartHandle);
      u.restartHandle = undefined;
    }
    u.starting = (u.kind === 'timer' ? this.startTimer(u) : this.startService(u)).finally(() => {
      u.starting = undefined;
    });
    return u.starting;
  }

  async stop(name: string): Promise<void> {
    const u = this.unit(name);
    if (u.kind === 'timer') {
      if (u.timerHandle !== undefined) this.timers.clearTimeout(u.timerHandle);
      u.timerHandle = undefined;
      u.state = 'inactive';
      return;
    }
    if (u.restartHandle !== undefined) {
      this.timers.clearTimeout(u.restartHandle);
      u.restartHandle = undefined;
    }
    if (u.starting) await this.cancelStart(u, u.starting);
    u.stopping = true;
    try {
      u.state = 'deactivating';
      const timedOut = await this.terminate(u, 'stop');
      u.result = timedOut ? 'timeout' : 'success';
      // A stop that had to SIGKILL leaves the unit failed with Result=timeout, as systemd does.
      u.state = timedOut ? 'failed' : 'inactive';
    } finally {
      u.stopping = false;
      u.main = undefined;
      u.mainPid = undefined;
    }
  }

  /**
   * A stop while the unit is starting cancels the start job, as systemd
   * does: the start's processes (ExecStartPre=, a oneshot's ExecStart=) get
   * KillSignal=, then SIGKILL after TimeoutStopSec=.
   */
  private async cancelStart(u: Unit, starting: Promise<void>): Promise<void> {
    const spec = this.serviceOf(u);
    u.cancelled = true;
    try {
      const all = () => unitProcesses(u.mainPid ? [u.mainPid] : [], this.marker(u));
      let settled = false;
      const done = starting.then(
        () => (settled = true),
        () => (settled = true),
      );
      signalAll(all(), spec.killSignal);
      if (!(await this.gone(() => (settled ? [] : [0]), spec.timeoutStopMs))) {
        signalAll(all(), 'SIGKILL');
      }
      await done;
    } finally {
      u.cancelled = false;
    }
  }

  async restart(name: string): Promise<void> {
    await this.stop(name);
    await this.start(name);
  }

  /**
   * `systemctl reload-or-restart`: a reload when the unit runs and has
   * ExecReload=, else a restart (which starts a unit that is not running), as
   * systemctl(1) documents. volley config sync reloads the daemon with it.
   */
  async reloadOrRestart(name: string): Promise<void> {
    const u = this.unit(name);
    if (u.state === 'active' && this.serviceOf(u).execReload.length > 0) await this.reload(name);
    else await this.restart(name);
  }

  /** Runs ExecReload= with $MAINPID set; the unit must be active (`systemctl reload`). */
  async reload(name: string): Promise<void> {
    const u = this.unit(name);
    const spec = this.serviceOf(u);
    if (u.state !== 'active') throw new VolleyError('EUNITINACTIVE', `${u.file.name} is ${u.state}: cannot reload`);
    if (spec.execReload.length === 0) throw new VolleyError('EUNITNORELOAD', `${u.file.name} has no ExecReload=`);
    const env = this.environment(u, spec);
    if (u.mainPid !== undefined) env.MAINPID = String(u.mainPid);
    for (const command of spec.execReload) {
      const { code, signal } = await this.runControl(u, command, env);
      if (!command.ignoreFailure && (code !== 0 || signal)) {
        throw new VolleyError('EUNITRELOAD', `${u.file.name}: ExecReload=${command.line} failed (${signal ?? `exit ${code}`})`);
      }
    }
  }

  /** Elapses a timer now (what `systemctl start` of its service would do, recorded as the timer's). */
  async trigger(timerName: string): Promise<void> {
    const u = this.unit(timerName);
    if (u.kind !== 'timer' || !u.timer) throw new VolleyError('EUNITKIND', `${timerName} is not a timer`);
    await this.start(u.timer.unit);
  }

  /**
   * Powers off: SIGKILL to every process of every unit, no timers left. Used
   * for clean-up, so it depends on nothing the units do (nor on a test's
   * clock); the runner is unusable afterwards.
   */
  async close(): Promise<void> {
    this.closed = true;
    const everything = () => [...this.units.values()].flatMap((u) => unitProcesses(u.mainPid ? [u.mainPid] : [], this.marker(u)));
    for (const u of this.units.values()) {
      u.stopping = true;
      for (const handle of [u.restartHandle, u.timerHandle]) if (handle !== undefined) this.timers.clearTimeout(handle);
      u.restartHandle = undefined;
      u.timerHandle = undefined;
    }
    signalAll(everything(), 'SIGKILL');
    await this.gone(everything, undefined);
    for (const u of this.units.values()) {
      u.state = 'inactive';
      u.main = undefined;
      u.mainPid = undefined;
    }
  }

  // ---------------------------------------------------------------- loading

  private find(name: string): string {
    for (const dir of this.options.unitDirs) {
      const path = join(dir, name);
      if (existsSync(path)) return path;
    }
    throw new VolleyError('EUNITNOTFOUND', `unit ${name} not found in ${this.options.unitDirs.join(', ')}`);
  }

  private specs(file: UnitFile): Pick<Unit, 'kind' | 'service' | 'timer'> {
    if (file.name.endsWith('.service')) return { kind: 'service', service: serviceSpec(file) };
    if (file.name.endsWith('.timer')) return { kind: 'timer', timer: timerSpec(file) };
    throw new VolleyError('EUNITKIND', `${file.name}: only .service and .timer units are supported`);
  }

  private unit(name: string): Unit {
    const full = name.includes('.') ? name : `${name}.service`;
    let u = this.units.get(full);
    if (!u) {
      const file = readUnitFile(this.find(full));
      u = { file, ...this.specs(file), state: 'inactive', result: 'success', restarts: 0, enabled: false, stopping: false, cancelled: false, firedBoot: false, journal: [] };
      this.units.set(full, u);
    }
    return u;
  }

  private serviceOf(u: Unit): ServiceSpec {
    if (!u.service) throw new VolleyError('EUNITKIND', `${u.file.name} is not a service`);
    return u.service;
  }

  private marker(u: Unit): string {
    return `${MARKER_VAR}=${this.id}/${u.file.name}`;
  }

  /** DefaultEnvironment, then Environment=, then EnvironmentFile= (which wins, per systemd.exec(5)); read at each start. */
  private environment(u: Unit, spec: ServiceSpec): Record<string, string> {
    const env: Record<string, string> = { PATH: DEFAULT_PATH, ...this.options.environment };
    for (const [k, v] of spec.environment) env[k] = v;
    for (const file of spec.environmentFiles) {
      const onHost = this.options.hostPath?.(file.path) ?? file.path;
      if (!existsSync(onHost)) {
        if (file.optional) continue;
        throw new VolleyError('EUNITENVFILE', `${u.file.name}: EnvironmentFile=${file.path} does not exist`);
      }
      for (const [k, v] of parseEnvironmentFile(readFileSync(onHost, 'utf8'), file.path)) env[k] = v;
    }
    const [k, v] = this.marker(u).split('=');
    env[k] = v;
    return env;
  }

  // ---------------------------------------------------------------- processes

  private spawnCommand(u: Unit, command: ExecCommand, env: Record<string, string>): ChildProcess {
    const argv = commandArgv(command.line, env, u.file.name, `${u.file.path}: ${command.line}`);
    const wrap = this.options.wrap ?? [];
    const [file, ...args] = [...wrap, ...argv];
    // detached: its own session and process group, as systemd starts every service process.
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout?.on('data', (chunk: Buffer) => u.journal.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => u.journal.push(chunk.toString()));
    return child;
  }

  /** Runs a command to its end (ExecStartPre=, oneshot ExecStart=, ExecReload=). */
  private runControl(u: Unit, command: ExecCommand, env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return new Promise((resolve) => {
      const child = this.spawnCommand(u, command, env);
      child.once('error', (err) => {
        u.journal.push(`${command.line}: ${err.message}\n`);
        resolve({ code: 203, signal: null }); // systemd's EXIT_EXEC
      });
      // 'exit' can come before the last of its output is read (a loaded machine
      // showed an empty journal for a printf): wait for its pipes to close too,
      // but not for ever, since a child it left behind may hold them open.
      child.once('exit', (code, signal) => {
        const done = (): void => resolve({ code, signal });
        const late = setTimeout(done, 1000);
        child.once('close', () => (clearTimeout(late), done()));
      });
    });
  }

  private assertions(u: Unit, spec: ServiceSpec): void {
    for (const path of spec.assertMountPoints) {
      const negate = path.startsWith('!');
      const target = negate ? path.slice(1) : path;
      let mounted: boolean;
      try {
        const wrap = this.options.wrap ?? [];
        const [file, ...args] = [...wrap, 'mountpoint', '-q', target];
        execFileSync(file as string, args, { stdio: 'ignore' });
        mounted = true;
      } catch {
        mounted = false;
      }
      if (mounted === negate) {
        u.result = 'assert';
        throw new VolleyError('EUNITASSERT', `${u.file.name}: assertion AssertPathIsMountPoint=${path} failed`);
      }
    }
  }

  private async startService(u: Unit): Promise<void> {
    const spec = this.serviceOf(u);
    // Assertions are checked before anything runs; a failed one leaves the unit as it was (systemd.unit(5)).
    this.assertions(u, spec);
    const env = this.environment(u, spec);
    u.state = 'activating';
    u.lastActivated = this.timers.now();
    this.rearmTimersFor(u.file.name);
    for (const command of spec.execStartPre) {
      const { code, signal } = await this.runControl(u, command, env);
      this.abandonIfCancelled(u);
      if (!command.ignoreFailure && (code !== 0 || signal)) return this.failStart(u, code === 203 ? 'exec' : signal ? 'signal' : 'exit-code', code, signal);
    }
    if (spec.type === 'oneshot') {
      for (const command of spec.execStart) {
        const { code, signal } = await this.runControl(u, command, env);
        u.lastExit = { code, signal };
        this.abandonIfCancelled(u);
        if (!command.ignoreFailure && exitCause(spec, code, signal) !== 'clean') return this.failStart(u, signal ? 'signal' : 'exit-code', code, signal);
      }
      u.result = 'success';
      u.state = spec.remainAfterExit ? 'active' : 'inactive';
      return;
    }
    const child = this.spawnCommand(u, spec.execStart[0], env);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => {
        u.journal.push(`${spec.execStart[0].line}: ${err.message}\n`);
        u.state = 'failed';
        u.result = 'exec';
        reject(new VolleyError('EUNITEXEC', `${u.file.name}: cannot execute ${spec.execStart[0].line}: ${err.message}`));
      });
    });
    u.main = child;
    u.mainPid = child.pid;
    u.result = 'success';
    u.state = 'active';
    u.mainExited = new Promise((resolve) => child.once('exit', (code, signal) => {
      u.lastExit = { code, signal };
      resolve();
      if (!u.stopping && u.main === child) void this.mainDied(u, spec, code, signal);
    }));
  }

  private abandonIfCancelled(u: Unit): void {
    if (!u.cancelled) return;
    u.state = 'inactive';
    throw new VolleyError('EUNITCANCELLED', `${u.file.name}: start cancelled by a stop`);
  }

  private async failStart(u: Unit, result: string, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    u.result = result;
    u.stopping = true;
    await this.terminate(u, 'after-exit').finally(() => (u.stopping = false));
    u.state = 'failed';
    throw new VolleyError('EUNITSTART', `${u.file.name} failed to start (${signal ?? `exit ${code}`}); journal:\n${u.journal.join('').slice(-2000)}`);
  }

  /** The main process ended on its own: clean up what it left, then apply Restart=. */
  private async mainDied(u: Unit, spec: ServiceSpec, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const cause = exitCause(spec, code, signal);
    u.state = 'deactivating';
    u.stopping = true;
    try {
      await this.terminate(u, 'after-exit');
    } finally {
      u.stopping = false;
    }
    u.main = undefined;
    u.mainPid = undefined;
    u.result = cause === 'clean' ? 'success' : signal ? 'signal' : 'exit-code';
    if (!this.closed && restartsOnExit(spec, code, signal)) {
      u.state = 'activating'; // systemd shows "activating (auto-restart)" while RestartSec= runs
      u.restartHandle = this.timers.setTimeout(() => {
        u.restartHandle = undefined;
        u.restarts++;
        u.state = 'inactive';
        this.start(u.file.name).catch((err: Error) => u.journal.push(`restart failed: ${err.message}\n`));
      }, spec.restartMs);
      return;
    }
    u.state = cause === 'clean' ? 'inactive' : 'failed';
  }

  /**
   * Kills the unit's processes per KillMode= (systemd.kill(5)):
   * control-group: KillSignal= to every process, SIGKILL to those left after TimeoutStopSec=;
   * mixed: KillSignal= to the main process only, then SIGKILL to every process left
   * (at once when the main process has gone, else after TimeoutStopSec=);
   * process: KillSignal= then SIGKILL to the main process only; none: nothing.
   * `after-exit` is the clean-up after the main process died on its own (systemd's
   * final-SIGTERM phase). Returns whether TimeoutStopSec= ran out.
   */
  private async terminate(u: Unit, why: 'stop' | 'after-exit'): Promise<boolean> {
    const spec = this.serviceOf(u);
    const mainPid = u.mainPid;
    const all = () => unitProcesses(mainPid ? [mainPid] : [], this.marker(u));
    const mainOnly = () => (mainPid !== undefined && all().includes(mainPid) ? [mainPid] : []);
    if (spec.killMode === 'none') return false;
    const scope = spec.killMode === 'control-group' ? all : mainOnly;
    const first = scope();
    if (spec.killMode === 'mixed' && why === 'after-exit') {
      signalAll(all(), 'SIGKILL');
      await this.gone(all, undefined);
      return false;
    }
    if (first.length === 0 && spec.killMode !== 'mixed') return false;
    signalAll(first, spec.killSignal);
    // systemd follows the kill signal with SIGCONT so a stopped process can act on it.
    signalAll(first, 'SIGCONT');
    const inTime = await this.gone(scope, spec.timeoutStopMs);
    if (spec.killMode === 'mixed') {
      signalAll(all(), 'SIGKILL');
      await this.gone(all, undefined);
      return !inTime;
    }
    if (inTime) return false;
    u.journal.push(`${u.file.name}: stop timed out; sending SIGKILL\n`);
    signalAll(scope(), 'SIGKILL');
    await this.gone(scope, undefined);
    return true;
  }

  /** Waits until `list()` is empty (true) or `timeoutMs` of runner time passes (false). */
  private async gone(list: () => number[], timeoutMs: number | undefined): Promise<boolean> {
    let expired = false;
    const handle = timeoutMs === undefined ? undefined : this.timers.setTimeout(() => (expired = true), timeoutMs);
    try {
      while (list().length > 0) {
        if (expired) return false;
        await sleep(SCAN_MS);
      }
      return true;
    } finally {
      if (handle !== undefined) this.timers.clearTimeout(handle);
    }
  }

  // ---------------------------------------------------------------- timers

  private async startTimer(u: Unit): Promise<void> {
    u.state = 'active';
    this.arm(u);
  }

  /**
   * Arms the timer for its next elapse: OnBootSec= counts from the runner's
   * start (its "boot") and elapses once, at once if already past;
   * OnUnitActiveSec= counts from the last activation of the unit it
   * triggers. RandomizedDelaySec= is not applied, so runs are reproducible.
   */
  private arm(u: Unit): void {
    const spec = u.timer as TimerSpec;
    if (u.timerHandle !== undefined) this.timers.clearTimeout(u.timerHandle);
    u.timerHandle = undefined;
    if (u.state !== 'active' || this.closed) return;
    const now = this.timers.now();
    const candidates: { at: number; boot: boolean }[] = [];
    if (spec.onBootMs !== undefined && !u.firedBoot) candidates.push({ at: this.bootAt + spec.onBootMs, boot: true });
    const target = this.units.get(spec.unit);
    if (spec.onUnitActiveMs !== undefined && target?.lastActivated !== undefined) candidates.push({ at: target.lastActivated + spec.onUnitActiveMs, boot: false });
    const next = candidates.sort((a, b) => a.at - b.at)[0];
    if (!next) return;
    u.timerHandle = this.timers.setTimeout(() => {
      u.timerHandle = undefined;
      if (next.boot) u.firedBoot = true;
      this.start(spec.unit).catch((err: Error) => u.journal.push(`${spec.unit} failed: ${err.message}\n`));
      this.arm(u);
    }, Math.max(0, next.at - now));
  }

  private rearmTimersFor(serviceName: string): void {
    for (const u of this.units.values()) if (u.kind === 'timer' && u.timer?.unit === serviceName && u.state === 'active') this.arm(u);
  }
}
