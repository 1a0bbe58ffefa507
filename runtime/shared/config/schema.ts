// The JSON Schema of the one Volley config file (YAML on disk). The file is
// identical on every node; node-specific values (node id, persistent path,
// listen addresses) come from flags or the environment, never from here.

import { drainSchema } from './drain';
import { mirrorSchema } from './mirror';
import { eventsSchema, inboundSchema } from './events';
import { mtaStsSchema, resolverDnssecField, tlsCaFileField, tlsPoliciesSchema, tlsPolicyField, tlsRptSchema } from './tls';

const duration = { type: ['string', 'integer'], description: 'e.g. 250ms, 30s, 5m, 2h, 4d' };
const size = { type: ['string', 'integer'], description: 'e.g. 512KB, 25MB' };
const port = { type: 'integer', minimum: 0, maximum: 65535 };
const name = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' };
const hostname = { type: 'string', pattern: '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$', maxLength: 253 };
const ip = { type: 'string', description: 'an IPv4 or IPv6 address (checked after the schema)' };
const cidrs = { type: 'array', items: { type: 'string' } };
const tlsFiles = {
  type: 'object',
  additionalProperties: false,
  required: ['cert', 'key'],
  properties: { cert: { type: 'string' }, key: { type: 'string' } },
};

/** { name, sha256 } pairs: the hash from `volley config hash-token`, so the file holds no secret. */
const bearerTokens = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'sha256'],
    properties: { name, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
  },
};

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['hostname'],
  properties: {
    hostname,
    log: { type: 'object', additionalProperties: false, properties: { level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] } } },
    smtp: {
      type: 'object',
      additionalProperties: false,
      properties: {
        listeners: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'port'],
            properties: {
              name,
              port,
              address: { type: 'string' },
              tls: { enum: ['starttls', 'implicit', 'none'] },
              require_auth: { type: 'boolean' },
            },
          },
        },
        tls: tlsFiles,
        max_message_size: size,
        max_recipients: { type: 'integer', minimum: 1 },
        max_connections: { type: 'integer', minimum: 1 },
        max_connections_per_client: { type: 'integer', minimum: 1 },
        relay_from: cidrs,
        trusted_proxies: cidrs,
        socket_timeout: duration,
      },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        port,
        address: { type: 'string' },
        tls: tlsFiles,
        max_body_size: size,
        max_batch: { type: 'integer', minimum: 1 },
        max_connections: { type: 'integer', minimum: 1 },
        tokens: bearerTokens,
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      properties: {
        port,
        address: { type: 'string' },
        /** Bearer tokens for everything but /healthz, /readyz and /metrics: as http.tokens. */
        tokens: bearerTokens,
        /** The open endpoints alone on an address of their own, for load balancers. */
        health_listen: { type: 'object', additionalProperties: false, required: ['port'], properties: { port, address: { type: 'string' } } },
      },
    },
    users: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'password'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 256 },
          password: { type: 'string', pattern: '^scrypt\\$', description: 'a hash from `volley config hash-password`' },
        },
      },
    },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        segment_size: size,
        fsync: { type: 'boolean' },
        min_free: { type: ['string', 'integer'], description: 'free space below which intake refuses: a size (e.g. 1GB) or a percentage of the volume (e.g. 2%)' },
        reserve: size,
      },
    },
    vmtas: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'ip', 'helo'],
        properties: { name, ip, helo: hostname },
      },
    },
    pools: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'vmtas'],
        properties: {
          name,
          vmtas: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name'],
              properties: { name, weight: { type: 'integer', minimum: 1 } },
            },
          },
        },
      },
    },
    default_pool: name,
    routing: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['sender_domain'],
        properties: { sender_domain: { type: 'string' }, pool: name, vmta: name },
      },
    },
    routes: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['domain', 'host'],
        properties: { domain: { type: 'string', minLength: 1 }, host: { type: 'string', minLength: 1 }, port },
      },
    },
    resolver: {
      type: 'object',
      additionalProperties: false,
      properties: { servers: { type: 'array', items: { type: 'string' } }, dnssec: resolverDnssecField },
    },
    delivery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        retry: { type: 'array', minItems: 1, items: duration },
        max_lifetime: duration,
        concurrency: { type: 'integer', minimum: 1 },
        connect_timeout: duration,
        greeting_timeout: { ...duration, description: "wait this long for an MX's 220 (RFC 5321: 5m)" },
        dsn: { type: 'boolean', description: 'send RFC 3464 bounces to the return path (ESPs usually read events instead)' },
        pipeline_transactions: {
          type: 'boolean',
          description: 'with PIPELINING offered and mail queued, send the next envelope with the current body (RFC 2920); off for receivers that mishandle it',
        },
        mx_address_limit: { type: 'integer', minimum: 0, description: "MX addresses one delivery tries at most, in preference order (Postfix's smtp_mx_address_limit: 5); 0: no limit" },
        mx_session_limit: {
          type: 'integer',
          minimum: 0,
          description: "sessions (greeting and EHLO done) one delivery opens at most, moving to the next MX after one that ended early (Postfix's smtp_mx_session_limit: 2); 0: no limit",
        },
        tls_policy: tlsPolicyField,
        tls_ca_file: tlsCaFileField,
      },
    },
    events: eventsSchema,
    inbound: inboundSchema,
    drain: drainSchema,
    mirror: mirrorSchema,
    proxies: {
      type: 'object',
      additionalProperties: false,
      required: ['servers'],
      description: 'sending IPs reached through Volley proxies; any other VMTA IP is sent from directly',
      properties: {
        secret_file: { type: 'string', description: 'the shared secret (>= 32 bytes); or env VOLLEY_PROXY_SECRET' },
        servers: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'address', 'sending_ips'],
            properties: {
              name,
              address: { type: 'string', description: 'host:port of the proxy' },
              fingerprint: { type: 'string', description: "SHA-256 of the proxy's certificate" },
              ca_file: { type: 'string' },
              sending_ips: { type: 'array', minItems: 1, items: { type: 'string' } },
            },
          },
        },
      },
    },
    tls_policies: tlsPoliciesSchema,
    mta_sts: mtaStsSchema,
    tls_rpt: tlsRptSchema,
    haproxy: {
      type: 'object',
      additionalProperties: false,
      required: ['frontends'],
      description: 'sending IPs reached through HAProxy frontends (the PROXY header names the MX)',
      properties: {
        mtas: { type: 'integer', minimum: 1, description: 'how many MTAs share these IPs: each enforces 1/N of every throttle (the seed\'s HAProxy cluster)' },
        frontends: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['sending_ip', 'address'],
            properties: {
              sending_ip: { type: 'string' },
              address: { type: 'string', description: 'host:port of the HAProxy frontend for this IP' },
              proxy_protocol: { enum: ['v1', 'v2'] },
            },
          },
        },
      },
    },
    bounce_rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['category'],
        properties: {
          category: { enum: ['bad-mailbox', 'bad-domain', 'policy', 'quota', 'inactive', 'routing', 'protocol', 'content', 'other'] },
          code: { type: 'integer', minimum: 400, maximum: 599 },
          enhanced: { type: 'string', description: 'a regular expression matched against the enhanced status code' },
          text: { type: 'string', description: 'a regular expression matched against the reply text' },
        },
      },
    },
    rollups: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'mx'],
        properties: { name, mx: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } } },
      },
    },
    throttles: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['destination'],
        properties: {
          vmta: name,
          destination: { type: 'string', minLength: 1, description: 'a domain, a rollup name, or *' },
          max_connections: { type: 'integer', minimum: 1 },
          max_messages_per_hour: { type: 'integer', minimum: 1 },
        },
      },
    },
    backoff: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['pause'],
        properties: {
          destination: { type: 'string', minLength: 1 },
          code: { type: 'integer', minimum: 400, maximum: 499 },
          text: { type: 'string', description: 'a regular expression matched against the reply text' },
          pause: duration,
        },
      },
    },
    dkim: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['domain', 'selector', 'private_key_file'],
        properties: {
          domain: { type: 'string', minLength: 1 },
          selector: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
          algorithm: { enum: ['rsa-sha256', 'ed25519-sha256'] },
          private_key_file: { type: 'string', minLength: 1 },
          headers: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
} as const;
