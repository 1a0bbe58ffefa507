import type { Ext4Backup } from './ext4-backup';

/** What the persistent-path volume holds before we touch it. */
export type Probe =
  /** unfinished: not zeros, but no signature and no ext4 backup superblock (a first mkfs that was interrupted). */
  | { readonly blank: true; readonly unfinished?: true }
  /** ext4Backup: no signature, but an ext4 backup superblock (a damaged primary one; e2fsck -b repairs it). */
  | { readonly blank: false; readonly type?: string; readonly partitionTable?: string; readonly ext4Backup?: Ext4Backup };

/**
 * The host calls the bootstrap makes. LinuxSystem runs the real commands;
 * a test can run the same sequence against a loop device, or fake it.
 */
export interface BootstrapSystem {
  exists(path: string): Promise<boolean>;
  /** Resolves symlinks (the by-id name points at /dev/nvmeXn1). */
  realpath(path: string): Promise<string>;
  probe(device: string): Promise<Probe>;
  makeFilesystem(device: string, label: string): Promise<void>;
  /** The device mounted exactly at mountPoint, if any. */
  mountedSource(mountPoint: string): Promise<string | undefined>;
  mount(device: string, mountPoint: string): Promise<void>;
  startUnit(unit: string): Promise<void>;
  /** IPv4 addresses currently configured on the host's interfaces. */
  localAddresses(): Promise<string[]>;
  /** Reports to CloudFormation (cfn-signal); a no-op when not deployed by it. */
  signal(success: boolean, reason: string): Promise<void>;
}

export interface Log {
  info(message: string): void;
  error(message: string): void;
}

export const stderrLog: Log = {
  info: (message) => process.stderr.write(`volley bootstrap: ${message}\n`),
  error: (message) => process.stderr.write(`volley bootstrap: error: ${message}\n`),
};
