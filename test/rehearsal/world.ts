// "The internet" and the ingress of the rehearsal, in the VPC's hub
// namespace: a sink MX on 192.0.2.25 and .26 that records, per session, the source
// address (a sending IP), when it opened and closed, and each message's bytes; dnsmasq on 192.0.2.53
// answering MX records for the *.rehearsal.test domains; and `volley lb` (the
// packaged one) on the NLB's address standing in for the NLB, in front of the
// MTAs' private addresses; the events webhook's HTTPS receiver; and report(),
// which plays a receiver's MTA sending a DSN back.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { registerExitCleanup } from '../helpers/postfix-tools';
import { waitUntil } from '../helpers/proxy-fixtures';
import type { Netns } from './netns';

export const TEST_DOMAINS = ['inbox.rehearsal.test', 'throttled.rehearsal.test', 'held.rehearsal.test'] as const;

/** One session at the sink MX, as it saw it. */
export interface SinkSession {
  readonly id: number;
  readonly remote: string;
  /** The MX address it reached (each test domain has its own). */
  readonly local: string;
  readonly openedAt: number;
  closedAt?: number;
  readonly recipients: string[];
  messages: number;
  /** Messages that came over TLS (STARTTLS). */
  secureMessages: number;
  /** Each message's bytes as the MX received them (its DKIM signatures are checked on these). */
  readonly files: string[];
}

// The sink MX: smtp-server from this checkout, one JSON line per event. DATA
// is held a little so that sessions overlap if a throttle lets them. The first
// address (inbox.rehearsal.test's MX) offers STARTTLS with smtp-server's own
// self-signed certificate, the second does not: the deployed MTAs' default TLS
// policy (auto, which is `may` without MTA-STS or DANE) must encrypt to the one
// and go on in clear to the other, through the proxies.
const SINK = (smtpServer: string, log: string, holdMs: number, messages: string) => `const { SMTPServer } = require(${JSON.stringify(smtpServer)});
const fs = require('node:fs');
let stored = 0;
const log = (e) => fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ ...e, t: Date.now() }) + '\\n');
let ids = 0;
const options = {
  authOptional: true, banner: 'rehearsal sink MX', size: 64 * 1024 * 1024,
  onConnect(session, cb) { session.rid = process.pid * 100000 + ++ids; log({ e: 'open', id: session.rid, remote: session.remoteAddress.replace(/^::ffff:/, ''), local: session.localAddress.replace(/^::ffff:/, '') }); cb(); },
  onClose(session) { log({ e: 'close', id: session.rid }); },
  onRcptTo(a, session, cb) { log({ e: 'rcpt', id: session.rid, to: a.address }); cb(); },
  onData(stream, session, cb) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => setTimeout(() => {
      // Kept whole, before the 250: a message the MTA counts as delivered is one the rehearsal can read back.
      const file = ${JSON.stringify(messages)} + '/' + process.pid + '-' + ++stored + '.eml';
      fs.writeFileSync(file, Buffer.concat(chunks));
      log({ e: 'message', id: session.rid, secure: session.secure === true, file });
      cb();
    }, ${holdMs}));
  },
};
const servers = process.argv.slice(2).map((_, i) => new SMTPServer({ ...options, disabledCommands: i === 0 ? ['AUTH'] : ['STARTTLS', 'AUTH'] }));
let pending = servers.length;
process.argv.slice(2).forEach((address, i) => servers[i].listen(25, address, () => --pending === 0 && process.stdout.write('ready\\n')));
`;

// The events webhook's receiver (the operator's "CRM"): HTTPS with a certificate for its address, one JSON line per
// request (the Standard Webhooks headers and the body as sent), answered 204. It verifies nothing itself: the test
// checks each signature with the reference implementation, against the secret the fleet got from Secrets Manager.
const RECEIVER = (log: string, cert: string, key: string, address: string, port: number) => `const fs = require('node:fs');
const https = require('node:https');
const server = https.createServer({ cert: fs.readFileSync(${JSON.stringify(cert)}), key: fs.readFileSync(${JSON.stringify(key)}) }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = (req.headers['content-encoding'] === 'gzip' ? require('node:zlib').gunzipSync(Buffer.concat(chunks)) : Buffer.concat(chunks)).toString('utf8');
    const h = req.headers;
    fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ headers: { 'webhook-id': h['webhook-id'], 'webhook-timestamp': h['webhook-timestamp'], 'webhook-signature': h['webhook-signature'] }, body }) + '\\n');
    res.writeHead(204).end();
  });
});
server.listen(${port}, ${JSON.stringify(address)}, () => process.stdout.write('ready\\n'));
`;

/** One request the webhook receiver got. */
export interface WebhookRequest {
  readonly headers: Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string>;
  readonly body: string;
}

/** An SMTP session held open from the hub: greeted and EHLO done; send() completes one message on it later. */
export interface HeldSession {
  /** MAIL, RCPT, DATA, QUIT on the open session; resolves with the reply to the end of DATA. */
  send(to: string): Promise<string>;
}

// Inside the hub: opens a session to argv[2]:25 from argv[3], says EHLO, prints "ready", then on a stdin
// line "send TO" runs one transaction and prints the reply to the end of DATA.
const CLIENT = `const net = require('node:net');
const [host, local] = process.argv.slice(2);
const s = net.connect({ host, port: 25, localAddress: local });
let buf = '';
const waiters = [];
s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\r\\n')) >= 0) { const line = buf.slice(0, i); buf = buf.slice(i + 2); if (line[3] === ' ' && waiters.length) waiters.shift()(line); } });
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
s.on('close', () => { console.log('closed'); process.exit(0); });
const reply = () => new Promise((r) => waiters.push(r));
const cmd = (c) => { s.write(c + '\\r\\n'); return reply(); };
(async () => {
  await reply(); await cmd('EHLO held.rehearsal.client');
  console.log('ready');
  require('node:readline').createInterface({ input: process.stdin }).on('line', async (line) => {
    const to = line.split(' ')[1];
    await cmd('MAIL FROM:<news@sender.rehearsal.test>'); await cmd('RCPT TO:<' + to + '>'); await cmd('DATA');
    console.log('data ' + await cmd('Subject: held session\\r\\n\\r\\nsent after a config change\\r\\n.'));
  });
})();
`;

export interface World {
  /** Sessions the sink MX saw, by id. */
  sessions(): SinkSession[];
  /** Messages the sink accepted. */
  delivered(): number;
  /** Opens an SMTP session to `host`:25 that stays open until send(). */
  holdSession(host: string): Promise<HeldSession>;
  /** Starts the held domain's MX (a second sink process logging to the same file): its deferred mail can now be delivered. */
  openHeldMx(): Promise<void>;
  /** Starts `volley lb` on `address`:25 in front of these MTAs (SMTP checks on their port 25). */
  startLb(address: string, backends: readonly string[]): Promise<void>;
  /** Requests the webhook receiver got, in order. */
  webhookRequests(): WebhookRequest[];
  /** Sends `count` messages with swaks from the hub's client address to `lbAddress` (the lb, or an MTA), `parallel` at a time; resolves with how many were accepted. */
  send(lbAddress: string, to: string, count: number, parallel?: number): Promise<number>;
  /**
   * Sends the message in `file` as a remote mailer daemon sends a DSN (MAIL FROM:<>) with swaks, from the hub's
   * client address to `host`:`port` (an MTA's inbound listener); resolves with the reply to its end of DATA ('' if
   * the session never got there; swaks's transcript is in the error of a failed run).
   */
  report(host: string, port: number, to: string, file: string): Promise<string>;
  close(): Promise<void>;
}

function startReady(ns: Netns, argv: string[], name: string): Promise<ChildProcess> {
  const child = ns.spawn(argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  registerExitCleanup(() => void child.kill('SIGKILL'));
  let output = '';
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise((resolvePromise, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString();
      if (output.includes('ready')) resolvePromise(child);
    });
    child.once('exit', (code) => reject(new VolleyError('EWORLD', `${name} exited (${code}): ${output.trim().slice(-1000)}`)));
  });
}

/** True when the command exits 0 inside the namespace (a readiness probe for waitUntil). */
function succeeds(ns: Netns, argv: string[]): boolean {
  try {
    execFileSync(ns.wrap[0] as string, [...ns.wrap.slice(1), ...argv], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGKILL');
  await exited;
}

/**
 * inbox.rehearsal.test's MX is on sinkIps[0], throttled.rehearsal.test's on
 * sinkIps[1] (a session's MX address says which domain it carried),
 * held.rehearsal.test's on sinkIps[2], where nothing answers until openHeldMx().
 */
export async function startWorld(
  hub: Netns,
  dir: string,
  options: { sinkIps: readonly [string, string, string]; dnsIp: string; volleyJs: string; clientIp: string; holdMs?: number; webhook: { address: string; port: number; cert: string; key: string } },
): Promise<World> {
  const children: ChildProcess[] = [];
  const close = async () => void (await Promise.all(children.splice(0).map(stop)));
  try {
    const log = join(dir, 'sink.jsonl');
    writeFileSync(log, '');
    const messages = join(dir, 'sink-messages');
    mkdirSync(messages, { recursive: true });
    const sinkJs = join(dir, 'sink-mx.js');
    writeFileSync(sinkJs, SINK(require.resolve('smtp-server', { paths: [resolve(__dirname, '../..')] }), log, options.holdMs ?? 150, messages));
    children.push(await startReady(hub, [process.execPath, sinkJs, options.sinkIps[0], options.sinkIps[1]], 'sink MX'));
    const hookLog = join(dir, 'webhook.jsonl');
    writeFileSync(hookLog, '');
    const hookCert = join(dir, 'webhook-receiver.crt');
    const hookKey = join(dir, 'webhook-receiver.key');
    writeFileSync(hookCert, options.webhook.cert);
    writeFileSync(hookKey, options.webhook.key, { mode: 0o600 });
    const receiverJs = join(dir, 'webhook-receiver.js');
    writeFileSync(receiverJs, RECEIVER(hookLog, hookCert, hookKey, options.webhook.address, options.webhook.port));
    children.push(await startReady(hub, [process.execPath, receiverJs], 'webhook receiver'));
    const dnsmasq = hub.spawn(
      [
        'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${options.dnsIp}`,
        '--port=53', '--user=root', '--pid-file=', '--local=/rehearsal.test/',
        ...TEST_DOMAINS.flatMap((d, i) => [`--mx-host=${d},mx${i + 1}.rehearsal.test,10`, `--host-record=mx${i + 1}.rehearsal.test,${options.sinkIps[i]}`]),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    registerExitCleanup(() => void dnsmasq.kill('SIGKILL'));
    children.push(dnsmasq);
    await waitUntil(() => succeeds(hub, ['swaks', '--server', `${options.sinkIps[1]}:25`, '--quit-after', 'HELO', '--silent', '2']) && succeeds(hub, [process.execPath, '-e', `const r = new (require('node:dns').promises.Resolver)(); r.setServers(['${options.dnsIp}']); r.resolveMx('${TEST_DOMAINS[0]}').then((a) => process.exit(a.length ? 0 : 1), () => process.exit(1))`]), 10_000);

    const sessions = (): SinkSession[] => {
      const byId = new Map<number, SinkSession>();
      if (!existsSync(log)) return [];
      for (const line of readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
        const e = JSON.parse(line) as { e: string; id: number; remote?: string; local?: string; to?: string; secure?: boolean; file?: string; t: number };
        if (e.e === 'open') byId.set(e.id, { id: e.id, remote: e.remote ?? '', local: e.local ?? '', openedAt: e.t, recipients: [], messages: 0, secureMessages: 0, files: [] });
        const s = byId.get(e.id);
        if (!s) continue;
        if (e.e === 'close') s.closedAt = e.t;
        if (e.e === 'rcpt' && e.to) s.recipients.push(e.to);
        if (e.e === 'message') s.messages++;
        if (e.e === 'message' && e.file) s.files.push(e.file);
        if (e.e === 'message' && e.secure === true) s.secureMessages++;
      }
      return [...byId.values()];
    };
    return {
      sessions,
      async holdSession(host) {
        const js = join(dir, 'held-client.js');
        writeFileSync(js, CLIENT);
        const child = hub.spawn([process.execPath, js, host, options.clientIp], { stdio: ['pipe', 'pipe', 'pipe'] });
        registerExitCleanup(() => void child.kill('SIGKILL'));
        children.push(child);
        let out = '';
        child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
        await waitUntil(() => out.includes('ready') || out.includes('error') || child.exitCode !== null, 30_000);
        if (!out.includes('ready')) throw new VolleyError('EWORLD', `held session to ${host}: ${out.trim()}`);
        return {
          async send(to) {
            const before = out.length;
            child.stdin?.write(`send ${to}\n`);
            await waitUntil(() => /\n(data .*|closed|error .*)\n/.test(out.slice(before - 1)), 30_000);
            return (/\n(data .*|closed|error .*)\n/.exec(out.slice(before - 1))?.[1] ?? '').replace(/^data /, '');
          },
        };
      },
      async openHeldMx() {
        children.push(await startReady(hub, [process.execPath, sinkJs, options.sinkIps[2]], 'held MX'));
      },
      delivered: () => sessions().reduce((n, s) => n + s.messages, 0),
      webhookRequests: () => readFileSync(hookLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WebhookRequest),
      async startLb(address, backends) {
        const argv = [process.execPath, options.volleyJs, 'lb', '--listen', `${address}:25`, ...backends.flatMap((b) => ['--backend', `${b}:25`]), '--source-address', address, '--no-admin'];
        const lb = hub.spawn(argv, { stdio: ['ignore', 'pipe', 'pipe'] });
        registerExitCleanup(() => void lb.kill('SIGKILL'));
        children.push(lb);
        await waitUntil(() => succeeds(hub, ['swaks', '--server', `${address}:25`, '--quit-after', 'EHLO', '--silent', '2']), 30_000);
      },
      async send(lbAddress, to, count, parallel = 1) {
        let ok = 0;
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < count) {
            const i = next++;
            const r = await hub.exec(['swaks', '--server', `${lbAddress}:25`, '--local-interface', options.clientIp, '--from', 'news@sender.rehearsal.test', '--to', to, '--header', `Subject: rehearsal ${i}`, '--silent', '2']);
            if (r.code === 0) ok++;
          }
        };
        await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
        return ok;
      },
      async report(host, port, to, file) {
        const r = await hub.exec(['swaks', '--server', `${host}:${port}`, '--local-interface', options.clientIp, '--from', '<>', '--to', to, '--data', `@${file}`]);
        // swaks prints the data it sent (' -> ' lines) then the server's answer to the final dot.
        const reply = /\n -> \.\r?\n<-+ +(\d{3} [^\r\n]*)/.exec(r.stdout)?.[1];
        if (reply === undefined) throw new VolleyError('EWORLD', `report to ${host}:${port} got no reply to its data (swaks exit ${r.code}):\n${r.stdout.slice(-2000)}${r.stderr.slice(-1000)}`);
        return reply;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
