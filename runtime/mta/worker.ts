import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { VolleyConfig } from '../shared/config/types';
import { loadTls } from '../shared/tls-files';
import { HttpApi } from './intake/http-api';
import { IntakeClient } from './intake/intake-client';
import { SmtpListener } from './intake/smtp-listener';
import type { FromQueue, FromWorker, ToQueue, ToWorker } from './ipc';
import { register } from './metrics';
import type { QueueThreadData } from './queue-thread';

export interface Binds {
  smtp: Record<string, { address: string; port: number }>;
  http?: { address: string; port: number };
}

export interface WorkerOptions {
  config: VolleyConfig;
  persistentPath: string;
  nodeId: string;
  worker: number;
  workers: number;
  binds: Binds;
  logger: Logger;
  /** The script that starts a queue thread (the bundle itself: see bin/volley.ts). */
  script: string;
}

/**
 * One MTA worker process, in two threads. This one serves the shared SMTP
 * and HTTP listeners (the kernel spreads connections over workers); the queue
 * thread (queue-thread.ts) owns this worker's spool partitions and delivers
 * what they hold. Talks to the primary only through `ipc.ts` messages, most
 * of which it relays to the queue thread.
 */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const { logger } = options;
  let config = options.config;
  let pendingConfig: VolleyConfig | undefined;
  let stopping = false;

  const data: QueueThreadData = {
    volleyThread: 'mta-queue',
    config,
    persistentPath: options.persistentPath,
    nodeId: options.nodeId,
    worker: options.worker,
    workers: options.workers,
    hasPrimary: process.send !== undefined,
  };
  const thread = new Worker(options.script, { workerData: data });
  const toQueue = (m: ToQueue, transfer?: Parameters<Worker['postMessage']>[1]): void => thread.postMessage(m, transfer);
  const intake = new IntakeClient(toQueue);
  const send = (m: FromWorker): void => {
    if (process.send) process.send(m);
  };

  // The queue thread's metrics join this thread's in the answer to the primary:
  // prom-client asks each registry only for getMetricsAsJSON(), which this one fetches from the thread.
  let metricsSeq = 0;
  const metricsWaiting = new Map<number, (data: unknown[]) => void>();
  class QueueThreadRegistry extends Registry {
    override getMetricsAsJSON(): ReturnType<Registry['getMetricsAsJSON']> {
      return new Promise((resolve) => {
        const seq = ++metricsSeq;
        metricsWaiting.set(seq, resolve as (data: unknown[]) => void);
        toQueue({ type: 'metrics', seq });
      });
    }
  }
  AggregatorRegistry.setRegistries([register, new QueueThreadRegistry()]);

  const tls = await loadTls(config.smtp.tls, options.persistentPath, config.hostname);
  const smtp = config.smtp.listeners.map(
    (listener) => new SmtpListener({ listener, config, intake, tls, logger, bind: options.binds.smtp[listener.name] }),
  );
  const http = new HttpApi({ config, intake, tls: config.http.tls ? tls : undefined, logger, bind: options.binds.http });

  const queueReady = new Promise<void>((resolve, reject) => {
    thread.on('message', (m: FromQueue) => {
      switch (m.type) {
        case 'answers':
          return intake.onAnswers(m.batch);
        case 'metrics':
          metricsWaiting.get(m.seq)?.(m.data);
          metricsWaiting.delete(m.seq);
          return;
        case 'ready':
          return resolve();
        case 'stopped':
          return process.exit(0);
        case 'config-applied':
          if (pendingConfig) {
            config = pendingConfig;
            smtp.forEach((s) => s.apply(config));
            http.apply(config);
          }
          return send(m);
        default:
          return send(m);
      }
    });
    thread.once('error', (err) => {
      // An uncaught error in the queue thread ends this process, as it would have in one thread: the primary restarts it.
      logger.fatal({ err }, 'queue thread failed; the worker exits');
      intake.close(err);
      reject(err);
      process.exit(1);
    });
    thread.once('exit', (code) => {
      intake.close(new Error('queue thread stopped'));
      if (stopping) process.exit(0);
      logger.fatal({ code }, 'queue thread exited; the worker exits');
      process.exit(1);
    });
  });
  await queueReady;
  await Promise.all([...smtp.map((s) => s.listen()), http.listen()]);

  const shutdown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info('worker stopping: closing listeners, finishing deliveries in flight');
    await Promise.all([...smtp.map((s) => s.close()), http.close()]);
    toQueue({ type: 'shutdown' }); // the thread exits when done, and this process with it
  };

  process.on('message', (m: ToWorker) => {
    if (m.type === 'shutdown') return void shutdown();
    // The queue thread holds the part that can refuse a config (DKIM keys): listeners take it once the thread has.
    if (m.type === 'config') pendingConfig = m.config;
    toQueue(m);
  });
  // The primary owns signals; a worker whose primary vanished stops cleanly.
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => void shutdown());
  send({ type: 'ready', worker: options.worker });
}
