// A fake CloudFormation that records SignalResource calls (query protocol:
// Action=SignalResource&StackName&LogicalResourceId&UniqueId&Status), which is
// how an instance reports SUCCESS or FAILURE to its creation policy.
import { type FakeRequest, type FakeResponse, type Handler, requireScope, xmlEscape } from './http';

export interface Signal {
  readonly stack: string;
  readonly resource: string;
  readonly uniqueId: string;
  readonly status: 'SUCCESS' | 'FAILURE';
}

function cfnError(status: number, code: string, message: string): FakeResponse {
  return {
    status,
    headers: { 'content-type': 'text/xml' },
    body: `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>fake</RequestId></ErrorResponse>`,
  };
}

export class FakeCloudFormation {
  readonly signals: Signal[] = [];

  readonly handler: Handler = (request: FakeRequest): FakeResponse => {
    const refused = requireScope(request, 'cloudformation', (m) => cfnError(403, 'AccessDenied', m));
    if (refused) return refused;
    const form = new URLSearchParams(request.method === 'GET' ? request.query.toString() : request.body.toString());
    const action = form.get('Action');
    if (action !== 'SignalResource') return cfnError(400, 'InvalidAction', `fake CloudFormation does not implement ${action ?? '(no Action)'}`);
    const status = form.get('Status');
    const stack = form.get('StackName');
    const resource = form.get('LogicalResourceId');
    const uniqueId = form.get('UniqueId');
    if (!stack || !resource || !uniqueId || (status !== 'SUCCESS' && status !== 'FAILURE')) {
      return cfnError(400, 'ValidationError', 'SignalResource needs StackName, LogicalResourceId, UniqueId and Status SUCCESS|FAILURE');
    }
    this.signals.push({ stack, resource, uniqueId, status });
    return {
      status: 200,
      headers: { 'content-type': 'text/xml' },
      body: '<SignalResourceResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></SignalResourceResponse>',
    };
  };
}
