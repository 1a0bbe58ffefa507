import { gunzipSync } from 'node:zlib';
import { simpleParser } from 'mailparser';
import { buildReport, parseTlsRptTxt, reportFileName, reportMail } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-report';
import type { PolicyCounts } from '../../../../../runtime/mta/delivery/tls-policy/tls-rpt-store';
import { tlsRptErrors } from '../../../../helpers/tlsrpt-schema';

const meta = { organizationName: 'Volley Test', contactInfo: 'tls-reports@mta.test.example', submitter: 'mta.test.example', nodeId: 'node-1' };
const counts: PolicyCounts[] = [
  {
    policy: { type: 'sts', domain: 'a.test', strings: ['version: STSv1', 'mode: enforce', 'mx: mx.a.test', 'max_age: 86400'], mxHost: ['mx.a.test'] },
    ok: 7,
    failed: 2,
    failures: [{ resultType: 'sts-policy-invalid', mxHost: 'mx9.a.test', sendingIp: '127.0.0.1', receivingIp: '127.0.0.9', reasonCode: 'MX mx9.a.test is not in the policy', count: 2 }],
  },
  { policy: { type: 'tlsa', domain: 'a.test', strings: ['3 1 1 ' + 'ab'.repeat(32)], mxHost: ['mx.a.test'] }, ok: 1, failed: 0, failures: [] },
  { policy: { type: 'no-policy-found', domain: 'a.test', strings: [] }, ok: 3, failed: 0, failures: [] },
];

test('the report has the fields of RFC 8460 section 4 and validates against its schema', () => {
  const report = buildReport(meta, '2026-12-04', 'a.test', counts);
  expect(tlsRptErrors(report)).toEqual([]);
  expect(report).toMatchObject({
    'organization-name': 'Volley Test',
    'date-range': { 'start-datetime': '2026-12-04T00:00:00Z', 'end-datetime': '2026-12-04T23:59:59Z' },
    'contact-info': 'tls-reports@mta.test.example',
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-domain': 'a.test', 'mx-host': ['mx.a.test'] },
        summary: { 'total-successful-session-count': 7, 'total-failure-session-count': 2 },
        'failure-details': [{ 'result-type': 'sts-policy-invalid', 'receiving-mx-hostname': 'mx9.a.test', 'failed-session-count': 2 }],
      },
      { policy: { 'policy-type': 'tlsa' } },
      { policy: { 'policy-type': 'no-policy-found' } },
    ],
  });
  // The schema is strict enough to catch a wrong one.
  expect(tlsRptErrors({ ...report, policies: [{ policy: { 'policy-type': 'dane', 'policy-domain': 'a.test' }, summary: {} }] }).length).toBeGreaterThan(0);
});

test('the mail of RFC 8460 5.3: subject, TLS-Report-* headers, multipart/report with the gzipped JSON attached under the 5.1 file name', async () => {
  const report = buildReport(meta, '2026-12-04', 'a.test', counts);
  const raw = reportMail({ ...meta, from: 'noreply@mta.test.example' }, 'rua@a.test', report, '2026-12-04', 'a.test', new Date('2026-12-05T00:20:00Z'));
  const mail = await simpleParser(raw);
  expect(mail.subject).toBe(`Report Domain: a.test Submitter: mta.test.example Report-ID: <${report['report-id']}>`);
  expect(mail.headers.get('tls-report-domain')).toBe('a.test');
  expect(mail.headers.get('tls-report-submitter')).toBe('mta.test.example');
  expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/report', params: { 'report-type': 'tlsrpt' } });
  const att = mail.attachments.find((a) => a.contentType === 'application/tlsrpt+gzip');
  expect(att?.filename).toBe('mta.test.example!a.test!1796342400!1796428799!node-1.json.gz');
  expect(reportFileName(meta, '2026-12-04', 'a.test')).toBe(att?.filename);
  expect(JSON.parse(gunzipSync(att!.content).toString('utf8'))).toEqual(report);
});

test('the _smtp._tls record: its rua URIs (mailto: and https:), nothing for a malformed or doubled record', () => {
  expect(parseTlsRptTxt([['v=TLSRPTv1; rua=mailto:tlsrpt@a.test,https://r.a.test/v1']])).toEqual(['mailto:tlsrpt@a.test', 'https://r.a.test/v1']);
  expect(parseTlsRptTxt([['v=TLSRPTv1;', 'rua=mailto:x@a.test']])).toEqual(['mailto:x@a.test']);
  expect(parseTlsRptTxt([['v=TLSRPTv1; rua=http://insecure.a.test/,ftp://x']])).toEqual([]);
  expect(parseTlsRptTxt([['v=TLSRPTv1; rua=mailto:a@a.test'], ['v=TLSRPTv1; rua=mailto:b@a.test']])).toEqual([]);
  expect(parseTlsRptTxt([['v=spf1 -all']])).toEqual([]);
});
