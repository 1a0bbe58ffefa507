// A bare SMTP responder in Node: the replies an MTA must give, and nothing
// else (no spool, no checks, no delivery). The bench runs it under the same
// load as the MTA to show what one Node process's per-connection work costs
// on this machine, the floor under Volley's intake figure.
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
const server = createServer((s) => {
  s.setNoDelay(true);
  s.setEncoding('latin1');
  s.on('error', () => undefined);
  s.write('220 bare ESMTP\r\n');
  let inData = false;
  let rest = '';
  s.on('data', (d: string) => {
    rest += d;
    for (let nl = rest.indexOf('\n'); nl !== -1; nl = rest.indexOf('\n')) {
      const line = rest.slice(0, nl - 1);
      rest = rest.slice(nl + 1);
      if (inData) {
        if (line === '.') {
          inData = false;
          s.write('250 2.0.0 Ok: queued\r\n');
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') s.write('250-bare\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n');
      else if (verb === 'DATA') {
        inData = true;
        s.write('354 End data with <CR><LF>.<CR><LF>\r\n');
      } else if (verb === 'QUIT') s.end('221 2.0.0 Bye\r\n');
      else s.write('250 2.1.0 Ok\r\n');
    }
  });
});
server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
