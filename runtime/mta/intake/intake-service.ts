import type { Logger } from 'pino';
import type { FromQueue, SubmitAnswer, WireSubmission } from '../ipc';
import { IntakeError, type IntakePort } from './intake';

/**
 * The queue thread's end of intake-client.ts: runs each submission through
 * the real Intake and sends the answers of one event-loop turn back as one
 * message. Every submission gets exactly one answer.
 */
export class IntakeService {
  private answers: SubmitAnswer[] = [];

  constructor(
    private readonly intake: IntakePort,
    private readonly post: (m: FromQueue) => void,
    private readonly logger: Logger,
  ) {}

  submit(batch: { seq: number; sub: WireSubmission }[]): void {
    for (const { seq, sub } of batch) {
      const message = Buffer.from(sub.message.buffer, sub.message.byteOffset, sub.message.byteLength);
      this.intake.submit({ ...sub, message }).then(
        (entry) => this.answer({ seq, id: entry.id }),
        (err: Error) => {
          if (err instanceof IntakeError) {
            this.answer({ seq, refusal: { reason: err.reason, smtpCode: err.smtpCode, enhanced: err.enhanced, httpStatus: err.httpStatus, message: err.message } });
          } else {
            this.logger.error({ err }, 'intake failed');
            this.answer({ seq, error: err.message });
          }
        },
      );
    }
  }

  private answer(a: SubmitAnswer): void {
    if (this.answers.length === 0) {
      setImmediate(() => {
        const batch = this.answers;
        this.answers = [];
        this.post({ type: 'answers', batch });
      });
    }
    this.answers.push(a);
  }
}
