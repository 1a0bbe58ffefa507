// Config fields an operator may expect (they are in the design, or were once
// accepted) but that nothing implements yet. The loader refuses them by name
// rather than accept and ignore them: a setting that silently does nothing is
// worse than no setting.

/** Dotted field path -> what is missing. */
export const NOT_IMPLEMENTED: Readonly<Record<string, string>> = {
  'smtp.greeting_delay': 'the early-talker greeting hold is not built',
};

/** The message for a refused field, or undefined when the field is simply unknown. */
export function notImplemented(field: string): string | undefined {
  const why = NOT_IMPLEMENTED[field];
  return why && `"${field.slice(field.lastIndexOf('.') + 1)}" is not implemented yet (${why}): remove it`;
}
