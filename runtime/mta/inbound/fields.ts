// RFC 822-style field blocks as reports carry them: the groups of a
// message/delivery-status part, a message/feedback-report part, and the
// header block of an embedded original message. Small enough to parse here;
// mailparser splits the MIME, this reads what is inside a part.

/** One block of fields; names are case-insensitive, a field may repeat. */
export class FieldGroup {
  private readonly fields = new Map<string, string[]>();

  add(name: string, value: string): void {
    const key = name.toLowerCase();
    const list = this.fields.get(key);
    if (list) list.push(value);
    else this.fields.set(key, [value]);
  }

  get(name: string): string | undefined {
    return this.fields.get(name.toLowerCase())?.[0];
  }

  all(name: string): string[] {
    return this.fields.get(name.toLowerCase()) ?? [];
  }

  get size(): number {
    return this.fields.size;
  }

  /** Its fields as plain data, to cross to another thread (a class instance loses its methods there). */
  entries(): [string, string[]][] {
    return [...this.fields];
  }

  static fromEntries(entries: [string, string[]][]): FieldGroup {
    const g = new FieldGroup();
    for (const [name, values] of entries) for (const v of values) g.add(name, v);
    return g;
  }
}

/**
 * Splits text into blank-line separated groups of fields, unfolding
 * continuation lines. A line that is neither a field nor a continuation is
 * skipped rather than fatal: receivers write loose reports.
 */
export function parseFieldGroups(text: string): FieldGroup[] {
  return [...fieldGroups(text)];
}

/**
 * The same groups one at a time, so a reader that stops early (a DSN past
 * inbound.max_report_recipients) never holds them all: a 10 MB report of
 * 180,000 groups took ~170 MB more RSS when its lines and groups were built
 * all at once (report.ts). Lines are walked in place, never split into one
 * array of them all.
 */
export function* fieldGroups(text: string): Generator<FieldGroup, void> {
  let group: FieldGroup | undefined;
  let name: string | undefined;
  let value = '';
  const flush = (): void => {
    if (name !== undefined) group!.add(name, value.trim());
    name = undefined;
  };
  for (const line of lines(text)) {
    if (line.trim() === '') {
      flush();
      if (group && group.size > 0) yield group;
      group = undefined;
      continue;
    }
    if ((line[0] === ' ' || line[0] === '\t') && name !== undefined) {
      value += ` ${line.trim()}`;
      continue;
    }
    flush();
    const m = /^([!-9;-~]+):(.*)$/.exec(line);
    if (!m) continue;
    group ??= new FieldGroup();
    name = m[1];
    value = m[2];
  }
  flush();
  if (group && group.size > 0) yield group;
}

/** The lines of text (CRLF or LF ends), one at a time. */
function* lines(text: string): Generator<string> {
  let start = 0;
  while (start <= text.length) {
    const nl = text.indexOf('\n', start);
    const end = nl === -1 ? text.length : nl;
    yield text.slice(start, end > start && text[end - 1] === '\r' ? end - 1 : end);
    if (nl === -1) return;
    start = nl + 1;
  }
}

/** The header block of a message (or of text/rfc822-headers): the fields before the first blank line. */
export function parseHeaderBlock(text: string): FieldGroup {
  const end = /\r?\n\r?\n/.exec(text);
  return parseFieldGroups(end ? text.slice(0, end.index) : text)[0] ?? new FieldGroup();
}

/** `rfc822; <a@b>` (an address-type field, RFC 3464 2.1.2) -> `a@b`; undefined when empty. */
export function typedValue(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const rest = (semi === -1 ? value : value.slice(semi + 1)).trim();
  return rest === '' ? undefined : rest;
}

/** The address in `<a@b>`, `a@b` or `Name <a@b>`; undefined when there is none. */
export function bareAddress(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const angle = /<([^<>\s]*)>/.exec(value);
  const address = (angle ? angle[1] : value.trim().split(/\s+/)[0] ?? '').trim();
  return /^[^@\s]+@[^@\s]+$/.test(address) ? address : undefined;
}
