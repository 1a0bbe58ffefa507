// RFC 5322 §2.3: CR and LF only together, no NUL. A bare LF is also how SMTP
// smuggling hides a second message, so it is refused, as Postfix does.
export type BodyProblem = 'bare-lf' | 'bare-cr' | 'nul' | 'long-line';

export const MAX_LINE = 998;

export function checkBody(body: Buffer): BodyProblem | undefined {
  if (body.indexOf(0) !== -1) return 'nul';
  let lineStart = 0;
  let nl = body.indexOf(10);
  while (nl !== -1) {
    if (nl === 0 || body[nl - 1] !== 13) return 'bare-lf';
    if (nl - 1 - lineStart > MAX_LINE) return 'long-line';
    lineStart = nl + 1;
    nl = body.indexOf(10, lineStart);
  }
  if (body.length - lineStart > MAX_LINE) return 'long-line';
  const cr = body.indexOf(13);
  // Every CR must be followed by LF; checking only when a CR exists outside a CRLF is rare.
  for (let i = cr; i !== -1; i = body.indexOf(13, i + 1)) if (body[i + 1] !== 10) return 'bare-cr';
  return undefined;
}
