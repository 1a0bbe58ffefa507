// Types for libqp (nodemailer's quoted-printable codec, RFC 2045 6.7), which ships none: the two functions the 7-bit downgrade uses.
declare module 'libqp' {
  /** Encodes bytes as quoted-printable; CR and LF stay literal, whitespace before a line break is encoded. */
  export function encode(buffer: Buffer | string): string;
  /** Inserts soft line breaks ("=\r\n") so that no line is longer than `lineLength` (76). */
  export function wrap(str: string, lineLength?: number): string;
}
