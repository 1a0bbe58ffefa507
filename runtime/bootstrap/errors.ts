// Every bootstrap failure carries a code, printed by `volley` next to the
// message, so an operator reading the journal knows which step failed.
export type BootstrapErrorCode =
  | 'ENOVOLUME'
  | 'EMANYVOLUMES'
  | 'ENOINTERFACE'
  | 'EMANYINTERFACES'
  | 'EBADSTATE'
  | 'ETIMEOUT'
  | 'EFILESYSTEM'
  | 'EMOUNT'
  | 'ENOTREADY'
  | 'EMETADATA'
  | 'ESIGNAL'
  /** CloudFormation waits for no signal from this resource (it is not being created or updated). */
  | 'ENOTWAITING';

export class BootstrapError extends Error {
  constructor(
    readonly code: BootstrapErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BootstrapError';
  }
}
