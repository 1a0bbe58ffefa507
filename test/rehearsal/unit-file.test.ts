// The unit-file reader on the instances' own units (assets/systemd) and on
// the syntax systemd documents: continuations, resets, quoting, expansion,
// and clear errors for what it cannot read.
import { join } from 'node:path';
import { commandArgv, parseEnvironmentFile, parseTimespan, parseUnitFile, readUnitFile, serviceSpec, timerSpec, unhandled } from './unit-file';

const ASSETS = join(__dirname, '..', '..', 'assets', 'systemd');

it('reads the instances\' units with systemd\'s defaults filled in', () => {
  const mta = serviceSpec(readUnitFile(join(ASSETS, 'volley-mta.service')));
  expect(mta).toMatchObject({
    type: 'simple',
    killMode: 'control-group',
    killSignal: 'SIGTERM',
    timeoutStopMs: 120_000,
    restart: 'on-failure',
    restartMs: 2000,
    user: 'volley',
    assertMountPoints: ['/var/lib/volley'],
    environmentFiles: [{ path: '/etc/volley/instance.env', optional: false }],
    environment: [['NODE_ENV', 'production']],
  });
  expect(mta.execReload.map((c) => c.line)).toEqual(['/bin/kill -HUP $MAINPID']);
  const bootstrap = serviceSpec(readUnitFile(join(ASSETS, 'volley-bootstrap.service')));
  expect(bootstrap).toMatchObject({ type: 'oneshot', remainAfterExit: true, restart: 'no', timeoutStopMs: 90_000 });
  expect(serviceSpec(readUnitFile(join(ASSETS, 'volley-proxy.service'))).execReload[0].line).toBe('/bin/kill -HUP $MAINPID');
  expect(timerSpec(readUnitFile(join(ASSETS, 'volley-config-sync.timer')))).toEqual({ unit: 'volley-config-sync.service', onBootMs: 120_000, onUnitActiveMs: 60_000 });
  // What the runner does not apply is listed, not silently dropped.
  expect(unhandled(readUnitFile(join(ASSETS, 'volley-mta.service')))).toEqual(
    expect.arrayContaining(['Service.ProtectSystem', 'Service.PrivateTmp', 'Service.LimitNOFILE', 'Service.StateDirectory', 'Service.AmbientCapabilities']),
  );
  expect(unhandled(readUnitFile(join(ASSETS, 'volley-bootstrap.service')))).toEqual(['Service.TimeoutStartSec', 'Service.FailureAction']);
});

it('expands the bootstrap\'s ExecStart= from its EnvironmentFile= the way systemd does', () => {
  const bootstrap = serviceSpec(readUnitFile(join(ASSETS, 'volley-bootstrap.service')));
  const env = Object.fromEntries(parseEnvironmentFile('VOLLEY_ROLE=mta\nVOLLEY_SLOT="dev mta 1"\nVOLLEY_REGION=eu-west-1\n', 'instance.env'));
  const argv = commandArgv(bootstrap.execStart[0].line, env, 'volley-bootstrap.service', 'test');
  // ${VAR} inside a word keeps its spaces; an unset one expands to nothing (and is dropped as a word of its own).
  expect(argv.slice(0, 6)).toEqual(['/opt/volley/bin/volley', 'bootstrap', 'mta', '--slot', 'dev mta 1', '--region']);
  expect(commandArgv('/bin/echo $WORDS x$$y %n 100%%', { WORDS: 'a  b' }, 'u.service', 'test')).toEqual(['/bin/echo', 'a', 'b', 'x$y', 'u.service', '100%']);
});

it('follows continuation lines, resets a list on an empty assignment, and keeps prefixes apart', () => {
  const unit = parseUnitFile('[Service]\nExecStart=/bin/a \\\n  --flag\nExecStartPre=/bin/x\nExecStartPre=\nExecStartPre=-/bin/y\n', 'c.service');
  const spec = serviceSpec(unit);
  expect(commandArgv(spec.execStart[0].line, {}, 'c.service', 'x')).toEqual(['/bin/a', '--flag']);
  expect(spec.execStartPre).toEqual([{ line: '/bin/y', ignoreFailure: true }]);
});

it('names the file, line and value of what it cannot read', () => {
  expect(() => parseUnitFile('[Service]\nnot an assignment\n', '/u/bad.service')).toThrow(expect.objectContaining({ code: 'EUNITSYNTAX', message: expect.stringContaining('/u/bad.service:2') }));
  expect(() => serviceSpec(parseUnitFile('[Service]\nType=forking\nExecStart=/bin/a\n', 'f.service'))).toThrow(expect.objectContaining({ code: 'EUNITVALUE' }));
  expect(() => serviceSpec(parseUnitFile('[Service]\nType=simple\n', 'n.service'))).toThrow(expect.objectContaining({ code: 'EUNITVALUE', message: expect.stringContaining('no ExecStart=') }));
  expect(() => serviceSpec(parseUnitFile('[Service]\nExecStart=@/bin/a argv0\n', 'p.service'))).toThrow(expect.objectContaining({ code: 'EUNITUNSUPPORTED' }));
  expect(() => parseTimespan('5 fortnights', 'x')).toThrow(expect.objectContaining({ code: 'EUNITVALUE' }));
  expect(() => commandArgv('/bin/a %i', {}, 'a.service', 'x')).toThrow(expect.objectContaining({ code: 'EUNITUNSUPPORTED' }));
  expect(() => parseEnvironmentFile('GOOD=1\nbad line\n', '/etc/volley/instance.env')).toThrow(expect.objectContaining({ code: 'EUNITENVFILE', message: expect.stringContaining('instance.env:2') }));
});

it('reads systemd time spans', () => {
  expect(parseTimespan('2min', 'x')).toBe(120_000);
  expect(parseTimespan('1min 30s', 'x')).toBe(90_000);
  expect(parseTimespan('120', 'x')).toBe(120_000);
  expect(parseTimespan('500ms', 'x')).toBe(500);
  expect(parseTimespan('infinity', 'x')).toBeUndefined();
});
