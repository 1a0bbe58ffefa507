import Ajv from 'ajv';
import MailComposer from 'nodemailer/lib/mail-composer';

// One message of the HTTP submission API, either raw RFC 5322 with its
// envelope or fields that Volley renders with nodemailer's MIME composer.
const address = { type: 'string', minLength: 1, maxLength: 320 };
const addressList = { type: 'array', items: address, maxItems: 10_000 };
export const httpMessageSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: {
    from: { type: 'string', maxLength: 320 },
    to: { ...addressList, minItems: 1 },
    cc: addressList,
    bcc: addressList,
    raw: { type: 'string', minLength: 1 },
    raw_encoding: { enum: ['utf8', 'base64'] },
    subject: { type: 'string' },
    text: { type: 'string' },
    html: { type: 'string' },
    reply_to: address,
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    attachments: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['filename', 'content'],
        properties: { filename: { type: 'string', minLength: 1 }, content: { type: 'string' }, content_type: { type: 'string' }, encoding: { enum: ['base64', 'utf8'] } },
      },
    },
    pool: { type: 'string' },
    vmta: { type: 'string' },
    metadata: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } },
  },
  not: { required: ['raw', 'subject'] },
} as const;

export interface HttpMessage {
  from: string;
  to: string[];
  cc?: string[];
  bcc?: string[];
  raw?: string;
  raw_encoding?: 'utf8' | 'base64';
  subject?: string;
  text?: string;
  html?: string;
  reply_to?: string;
  headers?: Record<string, string>;
  attachments?: { filename: string; content: string; content_type?: string; encoding?: 'base64' | 'utf8' }[];
  pool?: string;
  vmta?: string;
  metadata?: Record<string, string | number | boolean>;
}

export interface FieldError {
  field: string;
  message: string;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validateMessage = ajv.compile(httpMessageSchema);

export function validateHttpMessage(value: unknown): FieldError[] {
  if (validateMessage(value)) return [];
  return (validateMessage.errors ?? []).map((e) => {
    const base = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
    if (e.keyword === 'additionalProperties') return { field: [base, e.params.additionalProperty].filter(Boolean).join('.'), message: 'unknown field' };
    if (e.keyword === 'required') return { field: [base, e.params.missingProperty].filter(Boolean).join('.'), message: 'is required' };
    if (e.keyword === 'not') return { field: 'raw', message: 'give either raw or rendered fields (subject, text, html), not both' };
    return { field: base || '(message)', message: e.message ?? 'is invalid' };
  });
}

/** The bytes to store: the raw message with line ends made CRLF, or the rendered one. */
export async function renderHttpMessage(m: HttpMessage): Promise<Buffer> {
  if (m.raw !== undefined) {
    const raw = m.raw_encoding === 'base64' ? Buffer.from(m.raw, 'base64') : Buffer.from(m.raw, 'utf8');
    return Buffer.from(raw.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  }
  const composer = new MailComposer({
    from: m.from,
    to: m.to,
    cc: m.cc,
    replyTo: m.reply_to,
    subject: m.subject,
    text: m.text,
    html: m.html,
    headers: m.headers,
    newline: 'win',
    disableFileAccess: true,
    disableUrlAccess: true,
    attachments: m.attachments?.map((a) => ({
      filename: a.filename,
      content: Buffer.from(a.content, a.encoding === 'utf8' ? 'utf8' : 'base64'),
      contentType: a.content_type,
    })),
  });
  return composer.compile().build();
}

export function metadataStrings(meta: HttpMessage['metadata']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta ?? {})) out[k] = String(v);
  return out;
}
