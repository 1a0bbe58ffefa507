// A day's counts of one policy domain as an RFC 8460 aggregate report: the
// JSON (section 4), its gzip, the file name (5.1), the e-mail that carries it
// to a mailto: rua (5.3) and the parsing of the domain's `_smtp._tls` record (3).

import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { PolicyCounts } from './tls-rpt-store';

export interface TlsRptReport {
  'organization-name': string;
  'date-range': { 'start-datetime': string; 'end-datetime': string };
  'contact-info': string;
  'report-id': string;
  policies: {
    policy: { 'policy-type': 'sts' | 'tlsa' | 'no-policy-found'; 'policy-string'?: string[]; 'policy-domain': string; 'mx-host'?: string[] };
    summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
    'failure-details'?: {
      'result-type': string;
      'sending-mta-ip'?: string;
      'receiving-mx-hostname'?: string;
      'receiving-ip'?: string;
      'failed-session-count': number;
      'failure-reason-code'?: string;
    }[];
  }[];
}

export interface ReportMeta {
  organizationName: string;
  contactInfo: string;
  /** The submitting domain (our hostname), for the id, the file name and the mail headers. */
  submitter: string;
  /** This node: several nodes of one fleet each report what they saw. */
  nodeId: string;
}

export function buildReport(meta: ReportMeta, day: string, domain: string, counts: PolicyCounts[]): TlsRptReport {
  return {
    'organization-name': meta.organizationName,
    'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
    'contact-info': meta.contactInfo,
    // Stable for (day, domain, node): a report sent again after a crash can be recognised as the same one.
    'report-id': `${day}_${domain}_${meta.nodeId}@${meta.submitter}`,
    policies: counts.map((c) => ({
      policy: {
        'policy-type': c.policy.type,
        ...(c.policy.type === 'no-policy-found' ? {} : { 'policy-string': c.policy.strings }),
        'policy-domain': domain,
        ...(c.policy.mxHost ? { 'mx-host': c.policy.mxHost } : {}),
      },
      summary: { 'total-successful-session-count': c.ok, 'total-failure-session-count': c.failed },
      ...(c.failures.length > 0
        ? {
            'failure-details': c.failures.map((f) => ({
              'result-type': f.resultType,
              ...(f.sendingIp ? { 'sending-mta-ip': f.sendingIp } : {}),
              ...(f.mxHost ? { 'receiving-mx-hostname': f.mxHost } : {}),
              ...(f.receivingIp ? { 'receiving-ip': f.receivingIp } : {}),
              'failed-session-count': f.count,
              ...(f.reasonCode ? { 'failure-reason-code': f.reasonCode } : {}),
            })),
          }
        : {}),
    })),
  };
}

export function gzipReport(report: TlsRptReport): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(report), 'utf8'));
}

/** RFC 8460 5.1: sender!policy-domain!begin!end!unique-id.json.gz (times in seconds since the epoch). */
export function reportFileName(meta: ReportMeta, day: string, domain: string): string {
  const begin = Date.parse(`${day}T00:00:00Z`) / 1000;
  return `${meta.submitter}!${domain}!${begin}!${begin + 86_399}!${meta.nodeId}.json.gz`;
}

/** RFC 8460 5.3: the report as a multipart/report message with the gzipped JSON attached. */
export function reportMail(meta: ReportMeta & { from: string }, to: string, report: TlsRptReport, day: string, domain: string, now: Date): Buffer {
  const boundary = `volley-tlsrpt-${randomBytes(8).toString('hex')}`;
  const id = report['report-id'];
  const body = gzipReport(report).toString('base64').replace(/.{76}/g, '$&\r\n');
  const text = [
    `From: <${meta.from}>`,
    `To: <${to}>`,
    `Subject: Report Domain: ${domain} Submitter: ${meta.submitter} Report-ID: <${id}>`,
    `Date: ${now.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${randomBytes(8).toString('hex')}.tlsrpt@${meta.submitter}>`,
    `TLS-Report-Domain: ${domain}`,
    `TLS-Report-Submitter: ${meta.submitter}`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This is an aggregate TLS report (RFC 8460) from ${meta.organizationName} for ${domain}, ${day} (UTC).`,
    '',
    `--${boundary}`,
    'Content-Type: application/tlsrpt+gzip',
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${reportFileName(meta, day, domain)}"`,
    '',
    body.replace(/\r\n$/, ''),
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(text, 'latin1');
}

/** The rua URIs of a domain's `_smtp._tls` TXT records (RFC 8460 3); [] when it publishes none, or more than one TLSRPTv1 record. */
export function parseTlsRptTxt(records: string[][]): string[] {
  const rpt = records.map((chunks) => chunks.join('')).filter((r) => /^v=TLSRPTv1\s*(;|$)/.test(r));
  if (rpt.length !== 1) return [];
  for (const part of rpt[0].split(';')) {
    const m = /^\s*rua=(.*?)\s*$/.exec(part);
    if (!m) continue;
    return m[1]
      .split(',')
      .map((u) => u.trim())
      .filter((u) => /^(mailto:[^@\s]+@[^@\s]+|https:\/\/\S+)$/i.test(u));
  }
  return [];
}
