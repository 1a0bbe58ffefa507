// `sudo` and `visudo` for the rehearsal's instances: neither exists on this
// machine, and an HA pair needs both. install.sh checks the mirror's sudoers
// rule with `visudo -cqf`, and the mirror's promote_command
// (stacks/mirror-topology.ts) is `/usr/bin/sudo -n /usr/bin/systemctl start
// ...`. The stand-ins hold the instance to what sudo would allow: a command
// runs only when a NOPASSWD rule of /etc/sudoers.d names exactly its command
// line (arguments included) for the unit's user, so a promote_command that
// install.sh does not allow fails here as it would on the instance (sudo -n:
// "a password is required", status 1). Everything in the rehearsal runs as
// root (User= is not applied), so the user checked is the one given here:
// the mirror unit's, `volley`.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The sudoers grammar the stand-ins know: `Defaults...` lines and `user host=(runas) [NOPASSWD:] /absolute/command [args]`. */
const SOURCE_COMMON = String.raw`
const fs = require('node:fs');
const RULE = /^(\S+)\s+(\S+)\s*=\s*\((\w+)\)\s+(NOPASSWD:\s*)?(\/\S+(?:\s+\S+)*)\s*$/;
function parse(text, file) {
  const rules = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || /^Defaults[:\s]/.test(line)) return;
    const m = RULE.exec(line);
    if (!m) throw new Error(file + ':' + (i + 1) + ': syntax error near "' + line + '"');
    rules.push({ user: m[1], runas: m[3], nopasswd: m[4] !== undefined, command: m[5].split(/\s+/) });
  });
  return rules;
}
`;

function sudoSource(user: string, sudoersDir: string): string {
  return `#!${process.execPath}
// The rehearsal's sudo (test/rehearsal/sudo.ts): runs a command line only when /etc/sudoers.d allows it, without a password, to ${user}.
${SOURCE_COMMON}
const args = process.argv.slice(2);
while (args[0] === '-n') args.shift();
if (args.length === 0 || args[0].startsWith('-')) { console.error('rehearsal sudo: only "sudo [-n] /absolute/command [args]"'); process.exit(1); }
const dir = ${JSON.stringify(sudoersDir)};
const rules = (fs.existsSync(dir) ? fs.readdirSync(dir) : []).filter((f) => !f.includes('.') && !f.endsWith('~')).flatMap((f) => parse(fs.readFileSync(dir + '/' + f, 'utf8'), dir + '/' + f));
const allowed = rules.some((r) => (r.user === ${JSON.stringify(user)} || r.user === 'ALL') && r.runas === 'root' && r.nopasswd && r.command.length === args.length && r.command.every((w, i) => w === args[i]));
if (!allowed) { console.error('sudo: a password is required'); process.exit(1); }
const r = require('node:child_process').spawnSync(args[0], args.slice(1), { stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
`;
}

const VISUDO_SOURCE = `#!${process.execPath}
// The rehearsal's visudo (test/rehearsal/sudo.ts): only "visudo -c[q]f FILE", the check install.sh runs.
${SOURCE_COMMON}
const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-')).join('').replace(/-/g, '');
const file = args.find((a) => !a.startsWith('-'));
if (!flags.includes('c') || !flags.includes('f') || !file) { console.error('rehearsal visudo: only "visudo -cqf FILE"'); process.exit(1); }
try { parse(fs.readFileSync(file, 'utf8'), file); } catch (err) { console.error(err.message); process.exit(1); }
if (!flags.includes('q')) console.log(file + ': parsed OK');
`;

/** Writes `sudo` and `visudo` into `bin` (which the instance sees as /usr/bin); the sudo allows what a NOPASSWD rule in `sudoersDir` gives `user`. */
export function writeSudoTools(bin: string, options: { user?: string; sudoersDir?: string } = {}): void {
  writeFileSync(join(bin, 'sudo'), sudoSource(options.user ?? 'volley', options.sudoersDir ?? '/etc/sudoers.d'));
  writeFileSync(join(bin, 'visudo'), VISUDO_SOURCE);
  for (const name of ['sudo', 'visudo']) chmodSync(join(bin, name), 0o755);
}
