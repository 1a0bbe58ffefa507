import { join } from 'node:path';
import pino from 'pino';
import { HttpApi } from '../../runtime/mta/intake/http-api';
import { Intake, type MirrorBarrier } from '../../runtime/mta/intake/intake';
import { SmtpListener } from '../../runtime/mta/intake/smtp-listener';
import { SpoolPartition } from '../../runtime/mta/spool/partition';
import type { VolleyConfig } from '../../runtime/shared/config/types';
import { loadTls } from '../../runtime/shared/tls-files';

export interface IntakeHarness {
  partition: SpoolPartition;
  intake: Intake;
  smtp: SmtpListener;
  http: HttpApi;
  smtpPort: number;
  httpUrl: string;
  close(): Promise<void>;
}

/** The intake path in-process (spool partition, SMTP listener, HTTP API) on ephemeral ports; `mirror`: under a sync HA mirror. */
export async function startIntake(config: VolleyConfig, dir: string, spoolDir = join(dir, 'spool'), mirror?: MirrorBarrier): Promise<IntakeHarness> {
  const logger = pino({ level: 'silent' });
  const partition = await SpoolPartition.open({ dir: spoolDir, logger });
  const intake = new Intake(partition, config, mirror);
  const tls = await loadTls(undefined, dir, config.hostname);
  const smtp = new SmtpListener({ listener: config.smtp.listeners[0], config, intake, tls, logger, bind: { address: '127.0.0.1', port: 0 } });
  const http = new HttpApi({ config, intake, logger, bind: { address: '127.0.0.1', port: 0 } });
  await smtp.listen();
  await http.listen();
  return {
    partition,
    intake,
    smtp,
    http,
    smtpPort: smtp.port,
    httpUrl: `http://127.0.0.1:${http.port}`,
    async close() {
      await Promise.all([smtp.close(), http.close()]);
      await partition.close();
    },
  };
}
