// TLS-RPT in a running worker: every worker counts its own sessions to the
// domains that ask for reports (TlsRptStore, one file per worker); one worker
// (the first) sends the reports of finished days, reading every worker's
// files, soon after start and then every few minutes. Enabling or disabling
// `tls_rpt` takes a restart.

import type { Logger } from 'pino';
import type { VolleyConfig } from '../../../shared/config/types';
import { DnsTxt } from './dns-txt';
import { ReportInterest } from './tls-rpt-interest';
import { TlsRptSender } from './tls-rpt-sender';
import { TlsRptStore, tlsRptDir } from './tls-rpt-store';

/** How often the sending worker looks for finished days. */
const SEND_CHECK_MS = 5 * 60_000;

export interface TlsRptService {
  store: TlsRptStore;
  apply(config: VolleyConfig): void;
  close(): Promise<void>;
}

export function startTlsRpt(options: {
  config: VolleyConfig;
  persistentPath: string;
  worker: number;
  nodeId: string;
  submit: (mail: { from: string; to: string[]; message: Buffer }) => Promise<unknown>;
  logger: Logger;
}): TlsRptService | undefined {
  if (!options.config.tlsRpt.enabled) return undefined;
  const dir = tlsRptDir(options.persistentPath);
  const interest = new ReportInterest(new DnsTxt(options.config.resolver.servers));
  const store = new TlsRptStore({ dir, worker: `w${options.worker}`, logger: options.logger, interest });
  const sender =
    options.worker === 0
      ? new TlsRptSender({ dir, config: options.config, nodeId: options.nodeId, dns: new DnsTxt(options.config.resolver.servers), submit: options.submit, logger: options.logger })
      : undefined;
  const run = (): void => void sender?.sendDue().catch((err: unknown) => options.logger.error({ err }, 'TLS-RPT: sending failed'));
  const timer = sender ? setInterval(run, SEND_CHECK_MS) : undefined;
  timer?.unref();
  if (sender) setImmediate(run);
  return {
    store,
    apply: (config) => {
      const dns = new DnsTxt(config.resolver.servers);
      interest.setDns(dns);
      sender?.apply(config, dns);
    },
    close: async () => {
      clearInterval(timer);
      await store.close();
    },
  };
}
