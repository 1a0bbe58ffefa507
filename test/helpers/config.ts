import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../runtime/shared/config/load';
import type { VolleyConfig } from '../../runtime/shared/config/types';

// user "alice" / password "wonderland"; HTTP token "test-token"
export const ALICE_HASH = 'scrypt$1024$8$1$c2FsdHNhbHRzYWx0MTIzNA==$WY4v7FapwS6R53jzFQqvfm5Oo3BLTf/N7dRERbliMvA=';
export const TEST_TOKEN = 'test-token';
export const TEST_TOKEN_SHA256 = '4c5dc9b7708905f77f5e5d16316b5dfb425e68cb326dcd55a860e90a7707031e';
/** The admin API's token in test configs ("ops"), and the header that carries it. */
export const ADMIN_TOKEN = 'admin-token';
export const ADMIN_TOKEN_SHA256 = '10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a';
export const ADMIN_AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };
const ADMIN_YAML = `admin: { tokens: [{ name: ops, sha256: ${ADMIN_TOKEN_SHA256} }] }\n`;

/** A small config for tests; `extra` is appended YAML. */
export function testConfigYaml(options: { sinkPort?: number; extra?: string; relayFrom?: string[]; users?: string; concurrency?: number } = {}): string {
  return `hostname: mta.test.example
smtp:
  listeners:
    - { name: smtp, port: 0, address: 127.0.0.1, tls: starttls }
  relay_from: [${(options.relayFrom ?? ['127.0.0.1/32']).join(', ')}]
  max_message_size: 64KB
  max_recipients: 5
http:
  port: 0
  address: 127.0.0.1
  max_body_size: 256KB
  tokens: [{ name: test, sha256: ${TEST_TOKEN_SHA256} }]
users:
${options.users ?? `  - { name: alice, password: "${ALICE_HASH}" }`}
vmtas:
  - { name: v1, ip: 127.0.0.1, helo: v1.test.example }
pools:
  - { name: p1, vmtas: [{ name: v1 }] }
default_pool: p1
routes:
  - { domain: "*", host: 127.0.0.1, port: ${options.sinkPort ?? 9} }
delivery:
  retry: [1h]
  concurrency: ${options.concurrency ?? 500}
${ADMIN_YAML}${options.extra ?? ''}`;
}

export function testConfig(options: Parameters<typeof testConfigYaml>[0] = {}): VolleyConfig {
  return parseConfig(testConfigYaml(options), 'test.yaml');
}

export function writeTestConfig(dir: string, options: Parameters<typeof testConfigYaml>[0] = {}): string {
  const file = join(dir, 'volley.yaml');
  writeFileSync(file, testConfigYaml(options));
  return file;
}

/**
 * A delivery test's MTA config: plain SMTP on loopback, relay for 127/8, one
 * user; `rest` adds routes, throttles and the like.
 */
export function deliveryConfigYaml(rest: string): string {
  return `hostname: mta.test.example
smtp:
  listeners: [{ name: smtp, port: 0, address: 127.0.0.1, tls: none }]
  relay_from: [127.0.0.0/8]
users: [{ name: alice, password: "${ALICE_HASH}" }]
${ADMIN_YAML}${rest}`;
}
