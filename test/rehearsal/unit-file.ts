// Reads a systemd unit file the way systemd does (systemd.syntax(7),
// systemd.service(5), systemd.kill(5), systemd.timer(5)) so that the
// rehearsal runs the very units the instances install, not a paraphrase.
// Only the directives the runner honours are interpreted; everything else is
// kept in `sections` and listed by `unhandled()` so nothing is ignored silently.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';

export type Section = Map<string, string[]>;

export interface UnitFile {
  readonly name: string;
  readonly path: string;
  /** Section name -> directive -> values in order (an empty assignment resets the list, as systemd does). */
  readonly sections: Map<string, Section>;
}

export interface ExecCommand {
  /** The command line as written, before splitting and expansion (expansion needs the environment). */
  readonly line: string;
  /** `-` prefix: a failing exit status is ignored. */
  readonly ignoreFailure: boolean;
}

export type KillMode = 'control-group' | 'mixed' | 'process' | 'none';
export type RestartPolicy = 'no' | 'on-success' | 'on-failure' | 'on-abnormal' | 'on-abort' | 'always';

export interface ServiceSpec {
  readonly type: 'simple' | 'oneshot';
  readonly remainAfterExit: boolean;
  readonly execStartPre: ExecCommand[];
  readonly execStart: ExecCommand[];
  readonly execReload: ExecCommand[];
  /** `Environment=` assignments in order (later ones win). */
  readonly environment: [string, string][];
  readonly environmentFiles: { path: string; optional: boolean }[];
  readonly killMode: KillMode;
  readonly killSignal: NodeJS.Signals;
  /** undefined: infinity. */
  readonly timeoutStopMs: number | undefined;
  readonly restart: RestartPolicy;
  readonly restartMs: number;
  readonly successExitStatus: { codes: number[]; signals: NodeJS.Signals[] };
  /** Exit statuses and signals that restart the unit whatever Restart= says (RestartForceExitStatus=). */
  readonly restartForceExitStatus: { codes: number[]; signals: NodeJS.Signals[] };
  readonly user?: string;
  readonly group?: string;
  readonly assertMountPoints: string[];
}

export interface TimerSpec {
  readonly unit: string;
  readonly onBootMs?: number;
  readonly onUnitActiveMs?: number;
}

/** Directives the runner acts on; anything else in [Service] or [Timer] is reported by `unhandled()`. */
const HANDLED: Record<string, string[]> = {
  Unit: ['Description', 'Wants', 'After', 'Requires', 'Before', 'AssertPathIsMountPoint', 'Documentation'],
  Service: [
    'Type', 'RemainAfterExit', 'ExecStartPre', 'ExecStart', 'ExecReload', 'Environment', 'EnvironmentFile', 'KillMode', 'KillSignal',
    'TimeoutStopSec', 'Restart', 'RestartSec', 'SuccessExitStatus', 'RestartForceExitStatus', 'User', 'Group',
  ],
  Timer: ['OnBootSec', 'OnUnitActiveSec', 'Unit'],
  Install: ['WantedBy', 'RequiredBy', 'Alias', 'Also'],
};

export function parseUnitFile(text: string, path: string): UnitFile {
  const name = basename(path);
  const sections = new Map<string, Section>();
  let current: Section | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i].trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    // A trailing backslash continues the line; comment lines inside a continuation are skipped (systemd.syntax(7)).
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1) + ' ';
      i++;
      const next = lines[i].trim();
      if (next.startsWith('#') || next.startsWith(';')) continue;
      line += next;
    }
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      current = sections.get(header[1]) ?? new Map();
      sections.set(header[1], current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new VolleyError('EUNITSYNTAX', `${path}:${lineNo}: expected "[Section]" or "Key=Value", got "${line}"`);
    if (!current) throw new VolleyError('EUNITSYNTAX', `${path}:${lineNo}: assignment outside a section`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (value === '') current.set(key, []);
    else current.set(key, [...(current.get(key) ?? []), value]);
  }
  return { name, path, sections };
}

export function readUnitFile(path: string): UnitFile {
  return parseUnitFile(readFileSync(path, 'utf8'), path);
}

function values(unit: UnitFile, section: string, key: string): string[] {
  return unit.sections.get(section)?.get(key) ?? [];
}

function last(unit: UnitFile, section: string, key: string): string | undefined {
  const all = values(unit, section, key);
  return all[all.length - 1];
}

/** Directives present in the file that the runner does not act on, as "Section.Key". */
export function unhandled(unit: UnitFile): string[] {
  const out: string[] = [];
  for (const [section, entries] of unit.sections) {
    for (const key of entries.keys()) if (!(HANDLED[section] ?? []).includes(key)) out.push(`${section}.${key}`);
  }
  return out;
}

const TIME_UNITS: [RegExp, number][] = [
  [/^(us|usec)$/, 0.001],
  [/^(ms|msec)$/, 1],
  [/^(s|sec|second|seconds|)$/, 1000],
  [/^(m|min|minute|minutes)$/, 60_000],
  [/^(h|hr|hour|hours)$/, 3_600_000],
  [/^(d|day|days)$/, 86_400_000],
];

/** A systemd time span (systemd.time(7)): "2min", "1min 30s", "120" (seconds), "500ms"; undefined for "infinity". */
export function parseTimespan(value: string, where: string): number | undefined {
  if (value.trim() === 'infinity') return undefined;
  const parts = value.trim().match(/\d+(?:\.\d+)?\s*[a-z]*/g);
  if (!parts || parts.join('').replace(/\s/g, '') !== value.replace(/\s/g, '')) {
    throw new VolleyError('EUNITVALUE', `${where}: "${value}" is not a time span`);
  }
  let ms = 0;
  for (const part of parts) {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(part) as RegExpExecArray;
    const unit = TIME_UNITS.find(([re]) => re.test(m[2]));
    if (!unit) throw new VolleyError('EUNITVALUE', `${where}: unknown time unit "${m[2]}" in "${value}"`);
    ms += Number(m[1]) * unit[1];
  }
  return Math.round(ms);
}

function execCommands(unit: UnitFile, key: string): ExecCommand[] {
  return values(unit, 'Service', key).map((raw) => {
    let line = raw;
    let ignoreFailure = false;
    // Prefixes (systemd.service(5) table 1). "+", "!" and "!!" change privileges only; the rehearsal runs everything as root anyway.
    for (;;) {
      if (line.startsWith('-')) ignoreFailure = true;
      else if (line.startsWith('+') || line.startsWith('!')) {
        /* privilege prefix: no effect here */
      } else if (line.startsWith('@') || line.startsWith(':') || line.startsWith('|')) {
        throw new VolleyError('EUNITUNSUPPORTED', `${unit.path}: ${key}=${raw}: the "${line[0]}" prefix is not supported by the rehearsal runner`);
      } else break;
      line = line.slice(1);
    }
    return { line, ignoreFailure };
  });
}

function signalName(value: string, where: string): NodeJS.Signals {
  const name = (value.startsWith('SIG') ? value : `SIG${value}`) as NodeJS.Signals;
  if (!/^SIG[A-Z0-9]+$/.test(name)) throw new VolleyError('EUNITVALUE', `${where}: "${value}" is not a signal`);
  return name;
}

function bool(value: string | undefined, where: string): boolean {
  if (value === undefined) return false;
  if (/^(1|yes|true|on)$/i.test(value)) return true;
  if (/^(0|no|false|off)$/i.test(value)) return false;
  throw new VolleyError('EUNITVALUE', `${where}: "${value}" is not a boolean`);
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T, where: string): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new VolleyError('EUNITVALUE', `${where}: "${value}" is not one of ${allowed.join(', ')}`);
  return value as T;
}

/** The [Service] section as the runner needs it, with systemd's defaults. */
export function serviceSpec(unit: UnitFile): ServiceSpec {
  const at = (key: string) => `${unit.path}: ${key}`;
  const type = oneOf(last(unit, 'Service', 'Type'), ['simple', 'oneshot'] as const, 'simple', at('Type'));
  const execStart = execCommands(unit, 'ExecStart');
  if (execStart.length === 0) throw new VolleyError('EUNITVALUE', `${unit.path}: no ExecStart=`);
  if (type === 'simple' && execStart.length > 1) throw new VolleyError('EUNITVALUE', `${unit.path}: Type=simple allows one ExecStart=`);
  const environment: [string, string][] = [];
  for (const value of values(unit, 'Service', 'Environment')) {
    for (const word of splitWords(value, at('Environment'))) {
      const eq = word.indexOf('=');
      if (eq <= 0) throw new VolleyError('EUNITVALUE', `${at('Environment')}: "${word}" is not NAME=value`);
      environment.push([word.slice(0, eq), word.slice(eq + 1)]);
    }
  }
  // SuccessExitStatus= and RestartForceExitStatus= share a syntax: exit codes and signal names.
  const statuses = (key: string): { codes: number[]; signals: NodeJS.Signals[] } => {
    const found = { codes: [] as number[], signals: [] as NodeJS.Signals[] };
    for (const value of values(unit, 'Service', key)) {
      for (const word of value.split(/\s+/)) {
        if (/^\d+$/.test(word)) found.codes.push(Number(word));
        else found.signals.push(signalName(word, at(key)));
      }
    }
    return found;
  };
  const success = statuses('SuccessExitStatus');
  const stop = last(unit, 'Service', 'TimeoutStopSec');
  return {
    type,
    remainAfterExit: bool(last(unit, 'Service', 'RemainAfterExit'), at('RemainAfterExit')),
    execStartPre: execCommands(unit, 'ExecStartPre'),
    execStart,
    execReload: execCommands(unit, 'ExecReload'),
    environment,
    environmentFiles: values(unit, 'Service', 'EnvironmentFile').map((v) => (v.startsWith('-') ? { path: v.slice(1), optional: true } : { path: v, optional: false })),
    killMode: oneOf(last(unit, 'Service', 'KillMode'), ['control-group', 'mixed', 'process', 'none'] as const, 'control-group', at('KillMode')),
    killSignal: signalName(last(unit, 'Service', 'KillSignal') ?? 'SIGTERM', at('KillSignal')),
    // systemd's DefaultTimeoutStopSec= is 90 s.
    timeoutStopMs: stop === undefined ? 90_000 : parseTimespan(stop, at('TimeoutStopSec')),
    restart: oneOf(last(unit, 'Service', 'Restart'), ['no', 'on-success', 'on-failure', 'on-abnormal', 'on-abort', 'always'] as const, 'no', at('Restart')),
    // RestartSec= defaults to 100 ms.
    restartMs: parseTimespan(last(unit, 'Service', 'RestartSec') ?? '100ms', at('RestartSec')) ?? 100,
    successExitStatus: success,
    restartForceExitStatus: statuses('RestartForceExitStatus'),
    user: last(unit, 'Service', 'User'),
    group: last(unit, 'Service', 'Group'),
    assertMountPoints: values(unit, 'Unit', 'AssertPathIsMountPoint'),
  };
}

/** The [Timer] section; the triggered unit defaults to the timer's own name with .service. */
export function timerSpec(unit: UnitFile): TimerSpec {
  const at = (key: string) => `${unit.path}: ${key}`;
  const boot = last(unit, 'Timer', 'OnBootSec');
  const active = last(unit, 'Timer', 'OnUnitActiveSec');
  return {
    unit: last(unit, 'Timer', 'Unit') ?? unit.name.replace(/\.timer$/, '.service'),
    onBootMs: boot === undefined ? undefined : parseTimespan(boot, at('OnBootSec')),
    onUnitActiveMs: active === undefined ? undefined : parseTimespan(active, at('OnUnitActiveSec')),
  };
}

/**
 * Splits a value into words the way systemd does: whitespace separates,
 * "double" and 'single' quotes group, backslash escapes (systemd.syntax(7)).
 */
export function splitWords(value: string, where: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      const n = value[++i];
      word += n === 'n' ? '\n' : n === 't' ? '\t' : n;
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = undefined;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new VolleyError('EUNITSYNTAX', `${where}: unterminated ${quote} quote in "${value}"`);
  if (inWord) words.push(word);
  return words;
}

/**
 * A command line as systemd runs it (systemd.service(5), "Command lines"):
 * "${NAME}" inside a word is replaced by the value as is; "$NAME" standing
 * alone as a word is split at whitespace into several words; "$$" is a
 * literal "$" and "%%" a literal "%". Unset variables expand to nothing.
 */
export function commandArgv(line: string, env: Record<string, string>, unitName: string, where: string): string[] {
  const specifiers = line.replace(/%(.)/g, (_m, c: string) => {
    if (c === '%') return '%';
    if (c === 'n') return unitName;
    if (c === 'N') return unitName.replace(/\.[^.]+$/, '');
    throw new VolleyError('EUNITUNSUPPORTED', `${where}: specifier %${c} is not supported by the rehearsal runner`);
  });
  const argv: string[] = [];
  for (const word of splitWords(specifiers, where)) {
    const alone = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (alone) {
      argv.push(...(env[alone[1]] ?? '').split(/\s+/).filter(Boolean));
      continue;
    }
    argv.push(word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name?: string) => (m === '$$' ? '$' : (env[name as string] ?? ''))));
  }
  if (argv.length === 0) throw new VolleyError('EUNITVALUE', `${where}: empty command line`);
  return argv;
}

/** An EnvironmentFile= (systemd.exec(5)): NAME=value lines, # and ; comments, quotes removed. */
export function parseEnvironmentFile(text: string, path: string): [string, string][] {
  const out: [string, string][] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new VolleyError('EUNITENVFILE', `${path}:${i + 1}: expected NAME=value, got "${line}"`);
    const words = splitWords(m[2], `${path}:${i + 1}`);
    out.push([m[1], words.join(' ')]);
  });
  return out;
}
