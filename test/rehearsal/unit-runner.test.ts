// The unit runner against real processes: stop semantics per KillMode=
// (including a child that setsid()s and is orphaned), Restart= after each
// exit cause, ExecReload= with $MAINPID, oneshot units with their
// environment, assertions, and the instances' own timer unit.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitUntil } from '../helpers/proxy-fixtures';
import { tempDir } from '../helpers/tmp';
import { ManualTimers } from './timers';
import { exitCause, restartsAfter, UnitRunner } from './unit-runner';
import { serviceSpec, parseUnitFile } from './unit-file';
import { pidAlive } from '../helpers/procs';

const ASSETS = join(__dirname, '..', '..', 'assets', 'systemd');
const dir = tempDir('volley-units-');
let n = 0;
let runner: UnitRunner;
let timers: ManualTimers;
let work: string;

beforeEach(() => {
  work = join(dir, `case-${++n}`);
  mkdirSync(work);
  timers = new ManualTimers();
  runner = new UnitRunner({ unitDirs: [work], timers, environment: { WORK: work }, id: `test${process.pid}-${n}` });
});

afterEach(async () => {
  await runner.close();
});

function script(name: string, body: string): string {
  const path = join(work, name);
  writeFileSync(path, `#!/bin/bash\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

function unit(name: string, text: string): void {
  writeFileSync(join(work, name), text);
}

const read = (file: string): string => (existsSync(join(work, file)) ? readFileSync(join(work, file), 'utf8') : '');

/** A main process and an orphaned, setsid()ed grandchild; both log SIGTERM and keep running. */
function stubbornService(killMode: string): void {
  script(
    'main.sh',
    `trap 'echo main-term >> $WORK/terms' TERM
( setsid bash -c 'trap "echo child-term >> $WORK/terms" TERM; echo $$ > $WORK/child.pid; while :; do sleep 1000 & wait $!; done' & )
while :; do sleep 1000 & wait $!; done`,
  );
  unit('stubborn.service', `[Service]\nExecStart=${work}/main.sh\nKillMode=${killMode}\nTimeoutStopSec=5\n`);
}

describe('stop', () => {
  it('control-group: SIGTERM to every process of the unit, even one that left the tree, then SIGKILL after TimeoutStopSec', async () => {
    stubbornService('control-group');
    await runner.start('stubborn.service');
    await waitUntil(() => read('child.pid') !== '');
    const child = Number(read('child.pid'));
    const main = runner.status('stubborn').mainPid as number;
    // The grandchild is an orphan: found only because it carries the unit's marker.
    expect(readFileSync(`/proc/${child}/stat`, 'utf8')).not.toContain(`) S ${main} `);
    expect(runner.processes('stubborn.service')).toEqual(expect.arrayContaining([main, child]));

    const stopped = runner.stop('stubborn.service');
    await waitUntil(() => read('terms').includes('main-term') && read('terms').includes('child-term'), 5000, () => read('terms'));
    expect(pidAlive(main) && pidAlive(child)).toBe(true); // both ignore SIGTERM: no SIGKILL before the timeout
    expect(timers.waiting()).toEqual([5000]);
    timers.advance(5000);
    await stopped;
    expect(pidAlive(main) || pidAlive(child)).toBe(false);
    expect(runner.status('stubborn.service')).toMatchObject({ state: 'failed', result: 'timeout' });
  });

  it('mixed: SIGTERM to the main process only, SIGKILL to the rest', async () => {
    stubbornService('mixed');
    await runner.start('stubborn.service');
    await waitUntil(() => read('child.pid') !== '');
    const child = Number(read('child.pid'));
    const stopped = runner.stop('stubborn.service');
    await waitUntil(() => read('terms').includes('main-term'));
    timers.advance(5000);
    await stopped;
    expect(pidAlive(child)).toBe(false);
    expect(read('terms')).not.toContain('child-term');
  });

  it('process: only the main process is killed; the rest is left running', async () => {
    stubbornService('process');
    await runner.start('stubborn.service');
    await waitUntil(() => read('child.pid') !== '');
    const child = Number(read('child.pid'));
    const main = runner.status('stubborn').mainPid as number;
    const stopped = runner.stop('stubborn.service');
    await waitUntil(() => read('terms').includes('main-term'));
    timers.advance(5000);
    await stopped;
    expect(pidAlive(main)).toBe(false);
    expect(pidAlive(child)).toBe(true);
    expect(read('terms')).not.toContain('child-term');
    process.kill(child, 'SIGKILL');
  });

  it('a stop while a oneshot is still starting cancels the start and kills its process', async () => {
    unit('slow.service', `[Service]\nType=oneshot\nExecStart=/bin/sh -c "echo $$ > ${work}/slow.pid; exec sleep 1000"\n`);
    const outcome = runner.start('slow').then(
      () => 'started',
      (err: { code: string }) => err.code,
    );
    await waitUntil(() => read('slow.pid') !== '');
    await runner.stop('slow');
    expect(await outcome).toBe('EUNITCANCELLED');
    expect(pidAlive(Number(read('slow.pid')))).toBe(false);
    expect(runner.status('slow').state).toBe('inactive');
  });

  it('a process that exits on SIGTERM stops the unit cleanly, without waiting for the timeout', async () => {
    script('main.sh', 'exec sleep 1000');
    unit('quick.service', `[Service]\nExecStart=${work}/main.sh\nTimeoutStopSec=infinity\n`);
    await runner.start('quick');
    await runner.stop('quick');
    expect(runner.status('quick')).toMatchObject({ state: 'inactive', result: 'success', mainPid: undefined });
  });
});

describe('Restart=', () => {
  it('follows the exit-cause table of systemd.service(5)', () => {
    const spec = serviceSpec(parseUnitFile('[Service]\nExecStart=/bin/true\nSuccessExitStatus=7 SIGUSR1\n', 'x.service'));
    expect(exitCause(spec, null, 'SIGHUP')).toBe('clean');
    expect(exitCause(spec, null, 'SIGTERM')).toBe('clean');
    expect(exitCause(spec, null, 'SIGKILL')).toBe('unclean-signal');
    expect(exitCause(spec, null, 'SIGUSR1')).toBe('clean');
    expect(exitCause(spec, 7, null)).toBe('clean');
    expect(exitCause(spec, 1, null)).toBe('unclean-exit-code');
    // For Type=oneshot the four "clean" signals are not clean.
    const oneshot = serviceSpec(parseUnitFile('[Service]\nType=oneshot\nExecStart=/bin/true\n', 'y.service'));
    expect(exitCause(oneshot, null, 'SIGTERM')).toBe('unclean-signal');
    const table = (['clean', 'unclean-exit-code', 'unclean-signal', 'timeout'] as const).map((cause) =>
      (['no', 'always', 'on-success', 'on-failure', 'on-abnormal', 'on-abort'] as const).filter((p) => restartsAfter(p, cause)),
    );
    expect(table).toEqual([
      ['always', 'on-success'],
      ['always', 'on-failure'],
      ['always', 'on-failure', 'on-abnormal', 'on-abort'],
      ['always', 'on-failure', 'on-abnormal'],
    ]);
  });

  it('on-failure restarts after RestartSec on SIGKILL and a non-zero exit, not after SIGTERM or SIGHUP', async () => {
    script('main.sh', 'echo $$ >> $WORK/starts; if [ -e $WORK/exit3 ]; then rm $WORK/exit3; exit 3; fi; exec sleep 1000');
    unit('flaky.service', `[Service]\nExecStart=${work}/main.sh\nRestart=on-failure\nRestartSec=2\n`);
    const starts = () => read('starts').split('\n').filter(Boolean).length;
    await runner.start('flaky');
    await waitUntil(() => starts() === 1);

    process.kill(runner.status('flaky').mainPid as number, 'SIGKILL');
    await waitUntil(() => runner.status('flaky').state === 'activating' && timers.waiting().includes(2000), 5000, () => JSON.stringify(runner.status('flaky')));
    expect(starts()).toBe(1); // nothing before RestartSec
    timers.advance(2000);
    await waitUntil(() => runner.status('flaky').state === 'active' && starts() === 2);
    expect(runner.status('flaky').restarts).toBe(1);

    writeFileSync(join(work, 'exit3'), '');
    process.kill(runner.status('flaky').mainPid as number, 'SIGTERM'); // clean: not restarted ...
    await waitUntil(() => runner.status('flaky').state === 'inactive');
    expect(timers.waiting()).toEqual([]);
    await runner.start('flaky'); // ... and this start exits 3: restarted
    await waitUntil(() => runner.status('flaky').state === 'activating' && timers.waiting().includes(2000));
    expect(runner.status('flaky').lastExit).toEqual({ code: 3, signal: null });
    timers.advance(2000);
    await waitUntil(() => runner.status('flaky').state === 'active' && starts() === 4);

    process.kill(runner.status('flaky').mainPid as number, 'SIGHUP');
    await waitUntil(() => runner.status('flaky').state === 'inactive');
    expect(runner.status('flaky').restarts).toBe(2);
  });

  it('RestartForceExitStatus=SIGHUP restarts a main process killed by SIGHUP, which Restart=on-failure counts as clean', async () => {
    script('main.sh', 'echo $$ >> $WORK/starts; exec sleep 1000');
    unit('hup.service', `[Service]\nExecStart=${work}/main.sh\nRestart=on-failure\nRestartSec=2\nRestartForceExitStatus=SIGHUP\n`);
    const starts = () => read('starts').split('\n').filter(Boolean).length;
    await runner.start('hup');
    await waitUntil(() => starts() === 1);
    process.kill(runner.status('hup').mainPid as number, 'SIGHUP');
    await waitUntil(() => runner.status('hup').state === 'activating' && timers.waiting().includes(2000), 5000, () => JSON.stringify(runner.status('hup')));
    expect(runner.status('hup')).toMatchObject({ result: 'success', lastExit: { code: null, signal: 'SIGHUP' } });
    timers.advance(2000);
    await waitUntil(() => runner.status('hup').state === 'active' && starts() === 2);
    expect(runner.status('hup').restarts).toBe(1);
    await runner.stop('hup');
    expect(timers.waiting()).toEqual([]);
  });

  it('a stop never restarts, even with Restart=always', async () => {
    script('main.sh', 'exec sleep 1000');
    unit('always.service', `[Service]\nExecStart=${work}/main.sh\nRestart=always\nRestartSec=0\n`);
    await runner.start('always');
    await runner.stop('always');
    expect(timers.waiting()).toEqual([]);
    expect(runner.status('always').state).toBe('inactive');
  });
});

it('reload runs ExecReload= with $MAINPID of the running main process', async () => {
  script('main.sh', `trap 'echo hup >> $WORK/hups' HUP\necho > $WORK/ready\nwhile :; do sleep 1000 & wait $!; done`);
  unit('reloadable.service', `[Service]\nExecStart=${work}/main.sh\nExecReload=/bin/kill -HUP $MAINPID\n`);
  await runner.start('reloadable');
  await waitUntil(() => read('ready') !== ''); // a HUP before the trap is set would kill it
  const main = runner.status('reloadable').mainPid;
  await runner.reload('reloadable');
  await waitUntil(() => read('hups') === 'hup\n');
  expect(runner.status('reloadable')).toMatchObject({ state: 'active', mainPid: main });
  await runner.stop('reloadable');
  await expect(runner.reload('reloadable')).rejects.toMatchObject({ code: 'EUNITINACTIVE' });
});

it('oneshot: Environment=, EnvironmentFile= (a missing "-" file is skipped), ${VAR} and $VAR expansion, RemainAfterExit=', async () => {
  writeFileSync(join(work, 'instance.env'), '# instance\nTWO="p q"\nONE=from-file\n');
  unit(
    'once.service',
    `[Service]
Type=oneshot
RemainAfterExit=yes
Environment="ONE=x y" THREE=3
EnvironmentFile=${work}/instance.env
EnvironmentFile=-${work}/missing.env
ExecStart=/usr/bin/printf [%%s] \${ONE} $TWO \${THREE}
ExecStart=-/bin/false
`,
  );
  await runner.start('once');
  expect(runner.journal('once')).toBe('[from-file][p][q][3]');
  expect(runner.status('once').state).toBe('active');

  unit('strict.service', `[Service]\nType=oneshot\nEnvironmentFile=${work}/missing.env\nExecStart=/bin/true\n`);
  await expect(runner.start('strict')).rejects.toMatchObject({ code: 'EUNITENVFILE' });
  unit('failing.service', `[Service]\nType=oneshot\nExecStart=/bin/sh -c "exit 4"\n`);
  await expect(runner.start('failing')).rejects.toMatchObject({ code: 'EUNITSTART' });
  expect(runner.status('failing')).toMatchObject({ state: 'failed', result: 'exit-code' });
});

it('AssertPathIsMountPoint= refuses to start a unit whose path is not a mount point', async () => {
  unit('needs-volume.service', `[Unit]\nAssertPathIsMountPoint=${work}\n[Service]\nExecStart=/bin/sleep 1000\n`);
  await expect(runner.start('needs-volume')).rejects.toMatchObject({ code: 'EUNITASSERT' });
  expect(runner.status('needs-volume')).toMatchObject({ state: 'inactive', result: 'assert', mainPid: undefined });
  unit('needs-proc.service', `[Unit]\nAssertPathIsMountPoint=/proc\n[Service]\nExecStart=/bin/sleep 1000\n`);
  await runner.start('needs-proc');
  expect(runner.status('needs-proc').state).toBe('active');
});

it('runs the instances\' volley-config-sync.timer: OnBootSec=2min once, then OnUnitActiveSec=1min after each run', async () => {
  copyFileSync(join(ASSETS, 'volley-config-sync.timer'), join(work, 'volley-config-sync.timer'));
  unit('volley-config-sync.service', `[Service]\nType=oneshot\nExecStart=/bin/sh -c "echo run >> ${work}/runs"\n`);
  const runs = () => read('runs').split('\n').filter(Boolean).length;
  await runner.start('volley-config-sync.timer');
  expect(timers.waiting()).toEqual([120_000]);
  timers.advance(119_999);
  expect(runs()).toBe(0);
  timers.advance(1);
  await waitUntil(() => runs() === 1 && runner.status('volley-config-sync.service').state === 'inactive');
  expect(timers.waiting()).toEqual([60_000]);
  timers.advance(60_000);
  await waitUntil(() => runs() === 2 && runner.status('volley-config-sync.service').state === 'inactive');
  await runner.trigger('volley-config-sync.timer');
  expect(runs()).toBe(3);
  await runner.stop('volley-config-sync.timer');
  expect(timers.waiting()).toEqual([]);
});
