// Sends the TLS-RPT reports of finished UTC days (RFC 8460 3, 5): for each
// policy domain with counts, the rua URIs of its `_smtp._tls` TXT record get
// the day's report, https: by POST (application/tlsrpt+gzip) and mailto: as a
// message queued in our own spool (as DSNs are), so it is delivered, retried
// and logged like any other mail. What was sent is written down before the
// next URI, so a restart resends nothing that went out; a failed URI is tried
// again at the next run, for up to MAX_DAYS_LATE days.

import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { VolleyConfig } from '../../../shared/config/types';
import type { DnsTxt } from './dns-txt';
import { httpsRequest } from './https-client';
import { buildReport, gzipReport, parseTlsRptTxt, reportMail, type ReportMeta } from './tls-rpt-report';
import { dayFiles, readDay, storedDays, utcDay } from './tls-rpt-store';

export interface SenderOptions {
  dir: string;
  config: VolleyConfig;
  nodeId: string;
  dns: DnsTxt;
  /** Queues a message in our spool (the path DSNs take). */
  submit: (mail: { from: string; to: string[]; message: Buffer }) => Promise<unknown>;
  logger?: Logger;
  now?: () => number;
}

export interface Delivery {
  day: string;
  domain: string;
  uri: string;
  ok: boolean;
  error?: string;
}

/** Reports for a day wait this long past midnight UTC, so every worker's last counts are on disk. */
const DAY_END_MARGIN_MS = 15 * 60_000;
/** A report that could not be sent for this many days is dropped. */
const MAX_DAYS_LATE = 3;

export class TlsRptSender {
  private config: VolleyConfig;
  private readonly now: () => number;
  private running?: Promise<Delivery[]>;
  private dns: DnsTxt;

  constructor(private readonly options: SenderOptions) {
    this.config = options.config;
    this.dns = options.dns;
    this.now = options.now ?? Date.now;
  }

  /** A refresh: the next run reports with the new settings (and asks the new resolvers, when given). */
  apply(config: VolleyConfig, dns?: DnsTxt): void {
    this.config = config;
    if (dns) this.dns = dns;
  }

  /** Sends what finished days owe; one run at a time. */
  sendDue(): Promise<Delivery[]> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<Delivery[]> {
    const out: Delivery[] = [];
    const lastDone = utcDay(this.now() - 86_400_000 - DAY_END_MARGIN_MS);
    for (const day of storedDays(this.options.dir)) {
      if (day > lastDone) break;
      out.push(...(await this.sendDay(day)));
    }
    return out;
  }

  private async sendDay(day: string): Promise<Delivery[]> {
    const { dir, logger } = this.options;
    const sentFile = join(dir, `sent-${day}.json`);
    const sent = new Set<string>(existsSync(sentFile) ? (JSON.parse(readFileSync(sentFile, 'utf8')) as string[]) : []);
    const meta: ReportMeta & { from: string } = {
      organizationName: this.config.tlsRpt.organizationName,
      contactInfo: this.config.tlsRpt.contactInfo,
      submitter: this.config.hostname,
      nodeId: this.options.nodeId,
      from: this.config.tlsRpt.from,
    };
    const out: Delivery[] = [];
    let unfinished = false;
    for (const [domain, counts] of readDay(dir, day)) {
      if (sent.has(domain)) continue;
      let uris: string[];
      try {
        uris = parseTlsRptTxt(await this.dns.txt(`_smtp._tls.${domain}`));
      } catch (err) {
        logger?.warn({ domain, day, err: (err as Error).message }, 'TLS-RPT: _smtp._tls lookup failed; tried again later');
        unfinished = true;
        continue;
      }
      const report = buildReport(meta, day, domain, counts);
      let domainDone = true;
      for (const uri of uris) {
        const key = `${domain} ${uri}`;
        if (sent.has(key)) continue;
        try {
          if (uri.toLowerCase().startsWith('mailto:')) {
            const to = decodeURIComponent(uri.slice('mailto:'.length).split('?')[0]);
            await this.options.submit({ from: meta.from, to: [to], message: reportMail(meta, to, report, day, domain, new Date(this.now())) });
          } else {
            const answer = await httpsRequest(uri, {
              method: 'POST',
              headers: { 'content-type': 'application/tlsrpt+gzip' },
              body: gzipReport(report),
              caFile: this.config.tlsRpt.caFile,
              timeoutMs: this.config.tlsRpt.postTimeoutMs,
              maxBytes: 64 * 1024,
              dns: this.dns,
            });
            if (answer.status < 200 || answer.status > 299) throw new Error(`HTTP ${answer.status}`);
          }
          sent.add(key);
          writeFileSync(sentFile, JSON.stringify([...sent]));
          out.push({ day, domain, uri, ok: true });
          logger?.info({ domain, day, uri }, 'TLS-RPT report sent');
        } catch (err) {
          domainDone = false;
          out.push({ day, domain, uri, ok: false, error: (err as Error).message });
          logger?.warn({ domain, day, uri, err: (err as Error).message }, 'TLS-RPT report not sent; tried again later');
        }
      }
      if (domainDone) {
        sent.add(domain);
        writeFileSync(sentFile, JSON.stringify([...sent]));
      } else unfinished = true;
    }
    const tooLate = utcDay(this.now() - MAX_DAYS_LATE * 86_400_000) > day;
    if (!unfinished || tooLate) {
      if (unfinished) logger?.warn({ day }, 'TLS-RPT: reports of this day could not all be sent and are dropped');
      for (const f of dayFiles(dir, day)) rmSync(f, { force: true });
      rmSync(sentFile, { force: true });
    }
    return out;
  }
}
