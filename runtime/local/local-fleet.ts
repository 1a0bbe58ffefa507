import type { ChildProcess } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument, type Document } from 'yaml';
import { drainSection } from '../shared/drain-topology';
import { mtaProxiesSection, proxyConfigYaml, type ProxyNode } from '../shared/proxy-topology';
import { loadTls } from '../shared/tls-files';
import { SinkServer } from '../sink/sink-server';
import { DEFAULT_LAYOUT, type FleetLayout } from './fleet-layout';
import { spawnLogged } from './logged-child';

export interface LocalFleetOptions {
  /** The `volley` entry point to run children with (this very script). */
  volleyScript: string;
  /** The MTAs' config template (assets/config/local.yaml). */
  configPath: string;
  dataDir: string;
  sinkPort: number;
  /** Start the embedded sink MX (default); off when another sink listens on sinkPort. */
  embeddedSink?: boolean;
  /** Deliver to real MX servers (DNS) instead of the sink; optional resolver ip[:port]. */
  realMx?: { resolver?: string };
  /**
   * Stdout is a terminal: one status line rewritten in place every second.
   * Otherwise (a pipe, a log file) a plain line whenever the numbers change,
   * at most once a second.
   */
  live?: boolean;
  /** The fleet's loopback ports (fleet-layout.ts); default the README's fixed ones. */
  layout?: FleetLayout;
}

interface Child {
  name: string;
  proc: ChildProcess;
  log: string;
}

/**
 * `npm start`: the whole system on one machine, each part as its own process
 * run exactly as production runs it: `volley lb` in front of two `volley mta`
 * (each with its persistent path under the data folder), two `volley proxy`
 * holding the sending IPs 127.0.0.2-5, and the embedded sink MX. Ctrl-C stops
 * everything it started.
 */
export async function runLocalFleet(options: LocalFleetOptions): Promise<void> {
  const data = resolve(options.dataDir);
  const layout = options.layout ?? DEFAULT_LAYOUT;
  mkdirSync(data, { recursive: true });
  const sink = options.realMx || options.embeddedSink === false ? undefined : new SinkServer({ port: options.sinkPort, dir: join(data, 'sink') });
  await sink?.listen();

  const mtaConfigs = await prepareConfigs(data, options, layout);
  const children: Child[] = [];
  let stopping = false;
  const start = (name: string, args: string[]): void => {
    const log = join(data, `${name}.log`);
    const proc = spawnLogged(process.execPath, [options.volleyScript, ...args], log, (problem) => say(process.stderr, `\nvolley local: ${name}: ${problem}\n`));
    const child = { name, proc, log };
    children.push(child);
    proc.on('exit', (code, signal) => {
      if (stopping) return;
      // An MTA may be killed on purpose (to watch the lb carry on): say so and keep going.
      say(process.stderr, `\nvolley local: ${name} exited (${signal ?? code}); see ${log}. Restart it with: ${restartHint(options, layout, name, mtaConfigs, data)}\n`);
    });
  };

  // Heard from the first part started on: a stop (SIGTERM from a supervisor, Ctrl-C, a closed stdout) while
  // the parts come up must stop the ones already running, not leave them orphaned on their ports.
  let timer: ReturnType<typeof setInterval> | undefined;
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  // The reader went away (`volley local | head` once head has its lines): the next status line meets EPIPE, an
  // 'error' on stdout that, unheard, killed this process at once and left every part it started running, orphaned,
  // on its ports. It ends the fleet, as SIGPIPE ends a Unix program, but with its parts.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    say(process.stderr, `volley local: stdout closed (${err.code ?? err.message}); stopping the fleet\n`);
    void stop(0);
  });
  // Stderr may be that same closed pipe (`volley local 2>&1 | head`): the line just above then meets EPIPE there,
  // and unheard that 'error' killed this process in the middle of the stop, orphaning the parts not yet stopped.
  // A closed stderr only means nothing more can be said on it: the fleet goes on, or stops, as stdout decides.
  process.stderr.on('error', () => undefined);

  // One worker each, as the MTAs: the whole fleet shares this host's cores, and on the 2-core bench a
  // second worker per proxy cost 40-70 % more proxy CPU per message (test/bench/README.md, issue 20).
  for (const p of layout.proxies) start(p.name, ['proxy', '--config', join(data, `${p.name}.yaml`), '--workers', '1']);
  for (const m of layout.mtas) {
    start(m.name, mtaArgs(m, mtaConfigs.get(m.name) as string, data));
  }
  // Both MTA ports read the PROXY header from the lb, so they see (and limit) the real client.
  const lbArgs = ['lb', '--listen', `127.0.0.1:${layout.lb.smtp}=smtp+proxy`, ...layout.mtas.flatMap((m) => ['--backend', `127.0.0.1:${m.smtp}`])];
  lbArgs.push('--listen', `127.0.0.1:${layout.lb.http}=tcp+proxy`, ...layout.mtas.flatMap((m) => ['--backend', `127.0.0.1:${m.http}`]));
  // One lb worker, as the MTAs run one: here five daemons share the machine's
  // cores, and a second worker only competes with them (measured on 2 cores:
  // ~370-470 us of lb CPU per message with two workers, ~300-370 with one).
  lbArgs.push('--source-address', layout.lb.source, '--admin', `127.0.0.1:${layout.lb.admin}`, '--health-interval', '1s', '--workers', '1');
  start('lb', lbArgs);

  const ready = await Promise.all([...layout.mtas.map((m) => waitReady(`http://127.0.0.1:${m.admin}/readyz`, 60_000)), waitReady(`http://127.0.0.1:${layout.lb.admin}/readyz`, 60_000)]);
  if (ready.some((r) => !r)) {
    say(process.stderr, `volley local: not every part became ready; see the logs in ${data}\n`);
    return stop(1);
  }
  say(
    process.stdout,
    [
      '',
      'Volley local fleet is running: lb -> 2 MTAs -> 2 proxies (sending IPs 127.0.0.2-5) -> ' + (options.realMx ? 'real MX servers' : 'sink MX'),
      `  SMTP injection : 127.0.0.1:${layout.lb.smtp}   (via the lb; STARTTLS; AUTH user "volley" password "volley"; loopback may relay without AUTH)`,
      `  HTTP API       : http://127.0.0.1:${layout.lb.http}/v1/messages   (Authorization: Bearer local-token)`,
      `  lb status      : http://127.0.0.1:${layout.lb.admin}/status`,
      ...layout.mtas.map((m) => `  ${`${m.name} direct`.padEnd(15)}: SMTP 127.0.0.1:${m.smtp}, HTTP http://127.0.0.1:${m.http}/v1/messages   (this MTA alone, not through the lb)`),
      ...layout.mtas.map((m) => `  ${`${m.name} admin`.padEnd(15)}: http://127.0.0.1:${m.admin}/queue   (VOLLEY_ADMIN_TOKEN=local-admin volley queue --admin 127.0.0.1:${m.admin})`),
      ...layout.mtas.map((m) => `  ${`${m.name} events`.padEnd(15)}: ${join(data, m.name, 'log', 'events')}/*.jsonl`),
      sink
        ? `  sink MX        : 127.0.0.1:${options.sinkPort}, copies in ${join(data, 'sink')}`
        : options.realMx
          ? '  delivery       : real MX servers through DNS'
          : `  delivery       : the sink you run on 127.0.0.1:${options.sinkPort}`,
      `  process logs   : ${data}/*.log`,
      '',
      `  try: swaks --server 127.0.0.1:${layout.lb.smtp} --auth-user volley --auth-password volley --tls --to someone@example.test`,
      ...drainHint(layout, mtaConfigs, options.volleyScript, data),
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  if (!options.live) say(process.stdout, '(stdout is not a terminal: a status line is printed whenever the numbers change)\n');
  let last = { accepted: 0, delivered: 0, queued: 0, at: Date.now() };
  timer = setInterval(() => {
    void status(sink, layout).then((s) => {
      if (stopping) return;
      const dt = (Date.now() - last.at) / 1000;
      if (options.live) {
        say(process.stdout, `\r accepted ${Math.round((s.accepted - last.accepted) / dt)}/s  delivered ${Math.round((s.delivered - last.delivered) / dt)}/s  queued ${s.queued}  total delivered ${s.delivered}    `);
      } else if (s.accepted !== last.accepted || s.delivered !== last.delivered || s.queued !== last.queued) {
        // A log or a pipe gets whole lines, and none while nothing happens.
        say(process.stdout, `${new Date().toISOString()} status: accepted ${s.accepted}  delivered ${s.delivered}  queued ${s.queued}\n`);
      }
      last = { ...s, at: Date.now() };
    });
  }, 1000);

  async function stop(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    // The lb first, so no new mail arrives while the MTAs finish.
    const order = [...children.filter((c) => c.name === 'lb'), ...children.filter((c) => c.name !== 'lb')];
    for (const c of order) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGTERM');
        await new Promise((r) => c.proc.once('exit', r));
      }
    }
    await sink?.close();
    say(process.stdout, '\nvolley local: stopped\n');
    process.exit(code);
  }
}

/**
 * Writes to our stdout or stderr while it can still be written, and never
 * throws: once its reader is gone (EPIPE), the stream is destroyed and there
 * is no one left to tell, which is no reason to fail a stop in the middle.
 */
function say(stream: NodeJS.WriteStream, text: string): void {
  if (stream.destroyed || !stream.writable) return;
  try {
    stream.write(text);
  } catch {
    // Closed under us: nothing more can be said there.
  }
}

function mtaArgs(m: FleetLayout['mtas'][number], config: string, data: string): string[] {
  return ['mta', '--config', config, '--persistent-path', join(data, m.name), '--node-id', m.name, '--workers', '1', '--smtp-listen', `smtp=127.0.0.1:${m.smtp}`, '--http-listen', `127.0.0.1:${m.http}`, '--admin-listen', `127.0.0.1:${m.admin}`];
}

function restartHint(options: LocalFleetOptions, layout: FleetLayout, name: string, configs: ReadonlyMap<string, string>, data: string): string {
  const m = layout.mtas.find((x) => x.name === name);
  // The Node running this fleet (npm's pinned Node 24), not whichever `node` the operator's shell finds first.
  return m ? `${process.execPath} ${options.volleyScript} ${mtaArgs(m, configs.get(m.name) as string, data).join(' ')}` : '(restart volley local)';
}

/**
 * The lines that show a new user how to drain the first MTA into the second:
 * run on mta-1's "node" (its config, its admin API), with mta-2's drain
 * endpoint as the destination. mta-1 stops at the end; the exit notice above
 * prints the command that starts it again, empty.
 */
export function drainHint(layout: FleetLayout, configs: ReadonlyMap<string, string>, volleyScript: string, data: string): string[] {
  const [from, to] = layout.mtas;
  if (!from || !to) return [];
  const command = `VOLLEY_ADMIN_TOKEN=local-admin ${process.execPath} ${volleyScript} drain --config ${configs.get(from.name) as string} --persistent-path ${join(data, from.name)} --admin 127.0.0.1:${from.admin} --ca-file ${drainCaFile(data)} 127.0.0.1:${to.drain}`;
  return [`  drain ${from.name} into ${to.name} (moves its queue over HTTPS, then stops ${from.name}):`, `    ${command}`];
}

/**
 * Writes the proxies' configs (TLS pair, shared secret) and each MTA's config:
 * the same file but for its own drain endpoint (drain.listen), all with the
 * proxies' fingerprints and one drain secret. Returns MTA name -> config path.
 */
async function prepareConfigs(data: string, options: LocalFleetOptions, layout: FleetLayout): Promise<Map<string, string>> {
  const secretFile = join(data, 'proxy.secret');
  if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  // One drain secret for the fleet: a source signs with the one every destination checks.
  const drainSecretFile = join(data, 'drain.secret');
  if (!existsSync(drainSecretFile)) writeFileSync(drainSecretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const drainTls = await drainCertificates(data, layout);
  const nodes: ProxyNode[] = [];
  const fingerprints = new Map<string, string>();
  for (const p of layout.proxies) {
    const node: ProxyNode = { name: p.name, host: '127.0.0.1', port: p.port, sendingIps: p.ips };
    nodes.push(node);
    const dir = join(data, p.name);
    const tls = await loadTls(undefined, dir, `${p.name}.volley.test`);
    fingerprints.set(p.name, new X509Certificate(tls.cert).fingerprint256);
    const files = { cert: join(dir, 'tls', 'self-signed.crt'), key: join(dir, 'tls', 'self-signed.key'), secretFile, adminListen: `127.0.0.1:${p.admin}` };
    writeFileSync(join(data, `${p.name}.yaml`), proxyConfigYaml(node, files));
  }
  const doc = parseDocument(readFileSync(options.configPath, 'utf8'));
  doc.set('proxies', mtaProxiesSection(nodes, secretFile, (node) => ({ fingerprint: fingerprints.get(node.name) as string })));
  if (options.realMx) {
    doc.delete('routes');
    if (options.realMx.resolver) doc.set('resolver', { servers: [options.realMx.resolver] });
  } else {
    doc.set('routes', [{ domain: '*', host: '127.0.0.1', port: options.sinkPort }]);
  }
  return new Map(layout.mtas.map((m) => [m.name, writeMtaConfig(data, doc, m, drainSecretFile, drainTls.get(m.name) as DrainTls)]));
}

/** Where one MTA's drain certificate is, issued by the fleet's drain CA. */
export interface DrainTls {
  readonly cert: string;
  readonly key: string;
}

/** The fleet's drain CA file: what `volley drain --ca-file` trusts, as on AWS. */
export function drainCaFile(data: string): string {
  return join(data, 'drain-ca.crt');
}

/**
 * A drain CA for the fleet and a certificate for 127.0.0.1 per MTA, made at
 * the first start and kept: the source verifies each destination against the
 * CA, as it does on AWS (runtime/bootstrap/drain-secret.ts).
 */
export async function drainCertificates(data: string, layout: FleetLayout): Promise<Map<string, DrainTls>> {
  const { issueProxyCertificate, newProxyCa } = await import('../bootstrap/proxy-link');
  const caFile = drainCaFile(data);
  const caKeyFile = join(data, 'drain-ca.key');
  if (!existsSync(caFile) || !existsSync(caKeyFile)) {
    const ca = await newProxyCa('local drain');
    writeFileSync(caKeyFile, ca.key, { mode: 0o600 });
    writeFileSync(caFile, ca.cert);
  }
  const ca = { cert: readFileSync(caFile, 'utf8'), key: readFileSync(caKeyFile, 'utf8') };
  const out = new Map<string, DrainTls>();
  for (const m of layout.mtas) {
    const files = { cert: join(data, m.name, 'drain.crt'), key: join(data, m.name, 'drain.key') };
    if (!existsSync(files.cert) || !existsSync(files.key)) {
      mkdirSync(join(data, m.name), { recursive: true });
      const pair = await issueProxyCertificate(ca, { name: `volley drain ${m.name}`, ip: '127.0.0.1' });
      writeFileSync(files.key, pair.key, { mode: 0o600 });
      writeFileSync(files.cert, pair.cert);
    }
    out.set(m.name, files);
  }
  return out;
}

/** One MTA's config: the fleet's document with its own drain endpoint, on loopback, admitting only loopback. */
export function writeMtaConfig(data: string, doc: Document, m: FleetLayout['mtas'][number], drainSecretFile: string, tls: DrainTls): string {
  const own = doc.clone();
  const section = drainSection({ address: '127.0.0.1', port: m.drain, secretFile: drainSecretFile, acceptFrom: ['127.0.0.0/8'] });
  own.set('drain', own.createNode({ ...section, tls: { cert: tls.cert, key: tls.key } }));
  const out = join(data, `volley-${m.name}.yaml`);
  writeFileSync(out, own.toString());
  return out;
}

async function status(sink: SinkServer | undefined, layout: FleetLayout): Promise<{ accepted: number; delivered: number; queued: number }> {
  let accepted = 0;
  let queued = 0;
  for (const m of layout.mtas) {
    try {
      const metrics = await (await fetch(`http://127.0.0.1:${m.admin}/metrics`)).text();
      for (const line of metrics.split('\n')) if (line.startsWith('volley_intake_accepted_total')) accepted += Number(line.split(' ').pop());
      queued += ((await (await fetch(`http://127.0.0.1:${m.admin}/queue`, { headers: { authorization: 'Bearer local-admin' } }) /* admin.tokens in local.yaml */).json()) as { queued: number }).queued;
    } catch {
      // that MTA is down (perhaps on purpose)
    }
  }
  return { accepted, delivered: sink?.counts.messages ?? 0, queued };
}

async function waitReady(url: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
