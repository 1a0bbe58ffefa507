// The `Volley-<env>-Drain` SSM Run Command document: runs `volley drain` on
// the instance an operator targets, towards the drain endpoints of the
// environment's other MTAs. The operator (who holds ssm:SendCommand) names the
// destinations: the README runbook lists them with one describe-instances
// call, so the instances need no new permission and the document no AWS call.
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { INSTANCE_FILES } from '../topology';

export interface DrainDocumentProps {
  readonly envName: string;
  /** drain.listen's port on every MTA: the default port of a destination given without one. */
  readonly drainPort: number;
}

/** The document's name: what `aws ssm send-command --document-name` takes. */
export function drainDocumentName(envName: string): string {
  return `Volley-${envName}-Drain`;
}

// SSM substitutes {{ parameters }} into the script as text, before the shell
// reads it: every parameter is held to a pattern that admits no quote, no
// `$`, no `;`, so a value can never become shell syntax.
const DESTINATIONS = '^[A-Za-z0-9.:-]+( [A-Za-z0-9.:-]+)*$';
const CONCURRENCY = '^(|[1-9][0-9]?)$';
const DURATION = '^(|[0-9]+(ms|s|m|h|d))$';

/** Where an operator puts an admin token (one of the config's admin.tokens) on an MTA for the drain to use. */
export const ADMIN_TOKEN_FILE = '/etc/volley/admin.token';

/** The document's content (schema 2.2), exported for the tests that read the script. */
export function drainDocumentContent(props: DrainDocumentProps): Record<string, unknown> {
  return {
    schemaVersion: '2.2',
    description:
      `Volley ${props.envName}: drain this MTA (volley drain): stop its intake and delivery, wait for its events, move its queue to the ` +
      'destinations and stop it. The command\'s exit code is the drain\'s (volley drain --help): 0 done; a rerun after any other ' +
      'code, or after the command was cut, never duplicates a message.',
    parameters: {
      Destinations: {
        type: 'String',
        description: `The other MTAs' drain endpoints, space separated: private IPs (port ${props.drainPort}, the environment's drain port, is added), or host:port. Never this instance.`,
        allowedPattern: DESTINATIONS,
      },
      Concurrency: {
        type: 'String',
        description: 'Batches in flight (volley drain --concurrency, 1-64); empty: its default, 2 x CPUs, at least 10.',
        default: '',
        allowedPattern: CONCURRENCY,
      },
      MaxEventWait: {
        type: 'String',
        description: 'How long to wait for the events to be delivered before giving up with exit 10 (volley drain --max-event-wait, e.g. 30m); empty: its default.',
        default: '',
        allowedPattern: DURATION,
      },
      WaitOnEvents: {
        type: 'String',
        description: '"no" moves the queue without waiting for the event sinks (volley drain --no-wait-on-events): events still queued stay on this volume.',
        default: 'yes',
        allowedValues: ['yes', 'no'],
      },
      ExecutionTimeout: {
        type: 'String',
        description: 'Seconds before SSM stops the drain (it stops cleanly on SIGTERM, exit 42; a rerun resumes).',
        default: '36000',
        allowedPattern: '^[0-9]{1,6}$',
      },
    },
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: 'drain',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: {
          timeoutSeconds: '{{ ExecutionTimeout }}',
          runCommand: drainScript(props),
        },
      },
    ],
  };
}

/** The script the instance runs; its exit status is volley drain's. */
export function drainScript(props: DrainDocumentProps): string[] {
  return [
    'set -euo pipefail',
    // Only an MTA slot has a queue to drain. Read, not sourced: the file is data written by user data, not a script.
    "role=$(sed -n 's/^VOLLEY_ROLE=//p' /etc/volley/instance.env 2>/dev/null || true)",
    "slot=$(sed -n 's/^VOLLEY_SLOT=//p' /etc/volley/instance.env 2>/dev/null || true)",
    'if [ "$role" != mta ]; then echo "this instance is not a Volley MTA (VOLLEY_ROLE=${role:-unset}): nothing to drain" >&2; exit 2; fi',
    // Destinations are verified against the drain CA: a source deletes its copy only on an answer from another MTA of the environment.
    `args=(--json --config ${INSTANCE_FILES.mtaConfig} --ca-file ${INSTANCE_FILES.drainCa})`,
    "concurrency='{{ Concurrency }}'",
    "max_event_wait='{{ MaxEventWait }}'",
    'if [ -n "$concurrency" ]; then args+=(--concurrency "$concurrency"); fi',
    'if [ -n "$max_event_wait" ]; then args+=(--max-event-wait "$max_event_wait"); fi',
    "if [ '{{ WaitOnEvents }}' = no ]; then args+=(--no-wait-on-events); fi",
    // The drain stops and reads its own MTA through the admin API, which needs one of admin.tokens (README: drain on AWS).
    `if [ -r ${ADMIN_TOKEN_FILE} ]; then args+=(--token-file ${ADMIN_TOKEN_FILE}); fi`,
    // SSM keeps only the first 24,000 characters of the output: the whole progress is kept on the volume's host too.
    'mkdir -p /var/log/volley',
    'log=/var/log/volley/drain-$(date -u +%Y%m%dT%H%M%SZ).jsonl',
    'echo "volley drain of $slot: progress in $log" >&2',
    // Word splitting of the destinations is wanted: the pattern admits only host[:port] words and single spaces.
    'dests=()',
    `for d in {{ Destinations }}; do case "$d" in *:*) dests+=("$d") ;; *) dests+=("$d:${props.drainPort}") ;; esac; done`,
    // pipefail: the status is volley drain's, not tee's.
    '/opt/volley/bin/volley drain "${args[@]}" "${dests[@]}" 2>&1 | tee "$log"',
  ];
}

/**
 * The document, updated in place (a new version) on every deploy: the
 * operator's command line never changes with a release.
 */
export class DrainDocument extends Construct {
  readonly documentName: string;

  constructor(scope: Construct, id: string, props: DrainDocumentProps) {
    super(scope, id);
    this.documentName = drainDocumentName(props.envName);
    new ssm.CfnDocument(this, 'Document', {
      name: this.documentName,
      documentType: 'Command',
      documentFormat: 'JSON',
      targetType: '/AWS::EC2::Instance',
      updateMethod: 'NewVersion',
      content: drainDocumentContent(props),
    });
  }
}
