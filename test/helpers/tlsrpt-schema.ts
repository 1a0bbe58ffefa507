// RFC 8460's report schema (test/fixtures/tlsrpt, written out from the RFC's
// section 4) compiled once, for tests that check a report is well-formed.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';

const schema = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'tlsrpt', 'rfc8460-report.schema.json'), 'utf8')) as object;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

/** The schema's complaints about `report` ([] when it is valid). */
export function tlsRptErrors(report: unknown): string[] {
  return validate(report) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
}
