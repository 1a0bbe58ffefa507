import { diagnosticReply, parseDeliveryStatus } from '../../../../runtime/mta/inbound/dsn';

test('groups: the per-message one first, then one per recipient; address types and brackets are stripped, folded lines joined', () => {
  const text = [
    'Reporting-MTA: dns; mx.example.org',
    'Arrival-Date: Tue, 1 Dec 2026 09:00:01 GMT',
    '',
    'Final-Recipient: RFC822; <a@example.com>',
    'Original-Recipient: rfc822;A@Example.com',
    'Action: Failed',
    'Status: 5.1.1 (bad destination mailbox address)',
    'Diagnostic-Code: smtp; 550 5.1.1 no such',
    '  user here',
    '',
    'Final-Recipient: rfc822; b@example.com',
    'Action: delayed (retrying)',
    'Status: 4.4.7',
  ].join('\r\n');
  expect(parseDeliveryStatus(text)).toEqual({
    reportingMta: 'mx.example.org',
    arrivalDate: 'Tue, 1 Dec 2026 09:00:01 GMT',
    recipients: [
      { finalRecipient: 'a@example.com', originalRecipient: 'A@Example.com', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 no such user here', remoteMta: undefined },
      { finalRecipient: 'b@example.com', originalRecipient: undefined, action: 'delayed', status: '4.4.7', diagnostic: undefined, remoteMta: undefined },
    ],
    omitted: 0,
  });
});

test('no per-message group, and no recipient group with an Action', () => {
  expect(parseDeliveryStatus('Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.0.0\n')?.recipients).toHaveLength(1);
  expect(parseDeliveryStatus('Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b.example\n')).toBeUndefined();
  expect(parseDeliveryStatus('')).toBeUndefined();
});

test('a quoted multi-line reply loses its repeated code prefixes; text without a reply is kept as it is', () => {
  expect(diagnosticReply('550-5.7.1 [192.0.2.1] Our system has detected 550-5.7.1 an unusual rate 550 5.7.1  of mail')).toEqual({ code: 550, enhanced: '5.7.1', text: '[192.0.2.1] Our system has detected an unusual rate of mail' });
  expect(diagnosticReply('421 try later')).toEqual({ code: 421, enhanced: undefined, text: 'try later' });
  expect(diagnosticReply('X-Unix; mailbox is full')).toEqual({ text: 'X-Unix; mailbox is full' });
  expect(diagnosticReply(undefined)).toEqual({ text: '' });
});

test('past maxRecipients the recipient groups are counted, not read', () => {
  const group = (i: number): string => `Final-Recipient: rfc822; r${i}@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n`;
  const text = ['Reporting-MTA: dns; mx.example.org\r\n', group(0), 'X-Note: a group without an Action is no recipient\r\n', group(1), group(2), group(3)].join('\r\n');
  const dsn = parseDeliveryStatus(text, 2)!;
  expect(dsn.reportingMta).toBe('mx.example.org');
  expect(dsn.recipients.map((r) => r.finalRecipient)).toEqual(['r0@example.com', 'r1@example.com']);
  expect(dsn.omitted).toBe(2);
  expect(parseDeliveryStatus(text)!.omitted).toBe(0);
});
