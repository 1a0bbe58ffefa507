// The first steps every daemon's own config loader takes (the proxy's, the
// mirror's): read the file, parse its YAML, and insist on a mapping, each
// failure a clear ECONFIG naming the file. What the mapping must hold is
// each loader's own business.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { VolleyError } from '../errors';

/** The file's text, or ECONFIG naming why it cannot be read. */
export function readConfigFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new VolleyError('ECONFIG', `${file}: cannot read: ${(err as Error).message}`);
  }
}

/** The YAML document as a mapping, or ECONFIG naming the first problem. */
export function parseYamlMapping(text: string, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new VolleyError('ECONFIG', `${file}: YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new VolleyError('ECONFIG', `${file}: expected a mapping`);
  return doc as Record<string, unknown>;
}
