import { parseFeedbackReport } from '../../../../runtime/mta/inbound/arf';

test('the RFC 5965 fields, repeated ones kept, Received-Date read as the arrival date', () => {
  const text = [
    'Feedback-Type: Abuse',
    'User-Agent: SomeGenerator/1.0',
    'Version: 1',
    'Original-Mail-From: <bounce+x@bounces.example>',
    'Original-Rcpt-To: <a@example.net>',
    'Original-Rcpt-To: b@example.net',
    'Received-Date: Thu, 8 Mar 2005 14:00:00 EDT',
    'Source-IP: 192.0.2.1',
    'Reported-Domain: example.com',
    'Reported-Domain: example.org',
    'Reporting-MTA: dns; mail.example.net',
  ].join('\r\n');
  expect(parseFeedbackReport(text)).toEqual({
    feedbackType: 'abuse',
    userAgent: 'SomeGenerator/1.0',
    version: '1',
    originalMailFrom: 'bounce+x@bounces.example',
    originalRcptTo: ['a@example.net', 'b@example.net'],
    omitted: 0,
    sourceIp: '192.0.2.1',
    reportedDomain: ['example.com', 'example.org'],
    reportingMta: 'mail.example.net',
    arrivalDate: 'Thu, 8 Mar 2005 14:00:00 EDT',
  });
});

test('without a Feedback-Type it is not a feedback report', () => {
  expect(parseFeedbackReport('User-Agent: x\r\nVersion: 1\r\n')).toBeUndefined();
});

test('past maxRecipients the repeated Original-Rcpt-To fields (each an event) are counted, not read', () => {
  const text = ['Feedback-Type: abuse', 'Original-Rcpt-To: a@example.net', 'Original-Rcpt-To: b@example.net', 'Original-Rcpt-To: c@example.net'].join('\r\n');
  expect(parseFeedbackReport(text, 2)).toMatchObject({ originalRcptTo: ['a@example.net', 'b@example.net'], omitted: 1 });
  expect(parseFeedbackReport(text)).toMatchObject({ originalRcptTo: ['a@example.net', 'b@example.net', 'c@example.net'], omitted: 0 });
});
