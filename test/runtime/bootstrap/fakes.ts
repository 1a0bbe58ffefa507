// Test doubles for the bootstrap: a virtual clock, a recording host, and a
// tiny HTTP server standing in for the daemon's /readyz.
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BootstrapError, type BootstrapSystem, type Clock, type Log, type Probe } from '../../../runtime/bootstrap';

export class VirtualClock implements Clock {
  private current = 1_700_000_000_000;
  slept = 0;
  now(): number {
    return this.current;
  }
  async sleep(ms: number): Promise<void> {
    this.current += ms;
    this.slept += ms;
  }
}

export class MemoryLog implements Log {
  readonly lines: string[] = [];
  info(message: string): void {
    this.lines.push(message);
  }
  error(message: string): void {
    this.lines.push(`error: ${message}`);
  }
}

/** Records every host call in order; devices "appear" when the test says so. */
export class RecordingSystem implements BootstrapSystem {
  readonly calls: string[] = [];
  readonly devices = new Map<string, string>(); // by-id path -> real device
  probeResult: Probe = { blank: true };
  mounted: string | undefined;
  addresses: string[] = ['10.0.0.5'];
  onStartUnit: () => void = () => undefined;

  async exists(path: string): Promise<boolean> {
    return this.devices.has(path);
  }
  async realpath(path: string): Promise<string> {
    return this.devices.get(path) ?? path;
  }
  async probe(device: string): Promise<Probe> {
    this.calls.push(`probe ${device}`);
    return this.probeResult;
  }
  async makeFilesystem(device: string, label: string): Promise<void> {
    this.calls.push(`mkfs ${device} ${label}`);
  }
  async mountedSource(): Promise<string | undefined> {
    return this.mounted;
  }
  async mount(device: string, mountPoint: string): Promise<void> {
    this.calls.push(`mount ${device} ${mountPoint}`);
  }
  async startUnit(unit: string): Promise<void> {
    this.calls.push(`start ${unit}`);
    this.onStartUnit();
  }
  async localAddresses(): Promise<string[]> {
    return this.addresses;
  }
  /** Set: every signal is refused with this message, as CloudFormation refuses one it does not wait for. */
  refuseSignals: string | undefined;
  /** Set: every signal fails with this message otherwise (credentials, throttling, AccessDenied, a timeout). */
  failSignals: string | undefined;
  async signal(success: boolean): Promise<void> {
    this.calls.push(`signal ${success}`);
    if (this.refuseSignals !== undefined) throw new BootstrapError('ENOTWAITING', this.refuseSignals);
    if (this.failSignals !== undefined) throw new BootstrapError('ESIGNAL', this.failSignals);
  }
}

export interface ReadyServer {
  readonly url: string;
  status: number;
  close(): Promise<void>;
}

export async function startReadyServer(status = 200): Promise<ReadyServer> {
  const state = { status };
  const server: Server = createServer((req, res) => {
    res.statusCode = req.url === '/readyz' ? state.status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/readyz`,
    get status() {
      return state.status;
    },
    set status(value: number) {
      state.status = value;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
