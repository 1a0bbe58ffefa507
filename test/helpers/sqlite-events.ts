// Realistic events for the SQLite sink's tests (and their crash child):
// delivery attempts as the attempt log writes them, an asynchronous bounce and
// an FBL complaint, with deterministic ids so a test can name what it expects.

import type { BounceEvent, ComplaintEvent, DeliveryEvent, SinkBatch, VolleyEvent } from '../../runtime/mta/events/types';

const BASE_MS = Date.UTC(2026, 11, 5, 3, 0, 0);

export function deliveryEvent(id: string, i: number): DeliveryEvent {
  const failed = i % 5 === 3;
  const deferred = i % 5 === 4;
  return {
    event_id: id,
    time: new Date(BASE_MS + i * 1000).toISOString(),
    node: 'mta-1',
    event: 'delivery',
    status: failed ? 'failed' : deferred ? 'deferred' : 'delivered',
    message_id: `01JEV${String(i).padStart(6, '0')}@mta-1.example.net`,
    injection_id: `inj-${i}`,
    attempt: deferred ? 2 : 1,
    sender: 'news@shop.example.com',
    recipient: `user${i}@${i % 2 ? 'gmail.com' : 'yahoo.com'}`,
    domain: i % 2 ? 'gmail.com' : 'yahoo.com',
    vmta: 'vmta-a',
    pool: 'marketing',
    sending_ip: '127.0.0.4',
    helo: 'mta-a.example.net',
    mx_host: i % 2 ? 'gmail-smtp-in.l.google.com' : 'mta5.am0.yahoodns.net',
    mx_ip: '127.0.0.9',
    smtp_code: failed ? 550 : deferred ? 421 : 250,
    enhanced_code: failed ? '5.1.1' : deferred ? '4.7.0' : '2.0.0',
    smtp_text: failed ? "550 5.1.1 The email account that you tried to reach does not exist" : deferred ? '421 4.7.0 Try again later' : '250 2.0.0 OK 1733367799 queued',
    bounce_category: failed ? 'bad-mailbox' : undefined,
    tls_version: 'TLSv1.3',
    tls_cipher: 'TLS_AES_256_GCM_SHA384',
    tls_verified: true,
    time_in_queue_ms: 120 + i,
    connect_ms: 14,
    transaction_ms: 80,
    next_retry: deferred ? new Date(BASE_MS + i * 1000 + 300_000).toISOString() : undefined,
    size: 24_000 + i,
    dkim_domain: 'shop.example.com',
    metadata: { tenant: `t${i % 3}`, campaign: `spring-${i % 4}`, list: 'weekly' },
  };
}

export function bounceEvent(id: string, i: number): BounceEvent {
  return {
    event_id: id,
    time: new Date(BASE_MS + i * 1000 + 86_400_000).toISOString(),
    node: 'mta-1',
    event: 'bounce',
    status: 'failed',
    message_id: `01JEV${String(i).padStart(6, '0')}@mta-1.example.net`,
    recipient: `User${i}@Example.ORG`,
    matched_by: 'verp',
    smtp_code: 550,
    enhanced_code: '5.2.2',
    smtp_text: 'smtp; 550 5.2.2 mailbox full',
    bounce_category: 'quota',
    reporting_mta: 'dns; mx.example.org',
    metadata: { tenant: 'acme' },
  };
}

export function complaintEvent(id: string, i: number): ComplaintEvent {
  return {
    event_id: id,
    time: new Date(BASE_MS + i * 1000 + 172_800_000).toISOString(),
    node: 'mta-1',
    event: 'complaint',
    message_id: `01JEV${String(i).padStart(6, '0')}@mta-1.example.net`,
    recipient: `user${i}@aol.com`,
    matched_by: 'header',
    feedback_type: 'abuse',
    user_agent: 'Yahoo!-Mail-Feedback/2.0',
    source_ip: '127.0.0.4',
    reported_by: 'feedback@arf.mail.yahoo.com',
    metadata: { tenant: 't1', campaign: 'spring-1' },
  };
}

/** Batch `n` of `size` events, ids `b<n>-<i>`: mostly deliveries, with a bounce and a complaint in every ten. */
export function sampleBatch(n: number, size: number): SinkBatch {
  const events: VolleyEvent[] = [];
  for (let i = 0; i < size; i++) {
    const id = `b${n}-${i}`;
    const k = n * 10_000 + i;
    events.push(i % 10 === 7 ? bounceEvent(id, k) : i % 10 === 9 ? complaintEvent(id, k) : deliveryEvent(id, k));
  }
  return { events, lines: events.map((e) => JSON.stringify(e)) };
}
