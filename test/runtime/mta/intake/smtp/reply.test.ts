import { formatReply, reply } from '../../../../../runtime/mta/intake/smtp/reply';

describe('formatReply', () => {
  test('one line: code, enhanced code, text, CRLF', () => {
    expect(formatReply(reply(250, '2.1.0', 'Ok'))).toBe('250 2.1.0 Ok\r\n');
    expect(formatReply(reply(354, undefined, 'End data with <CR><LF>.<CR><LF>'))).toBe('354 End data with <CR><LF>.<CR><LF>\r\n');
  });

  test('several lines: a dash after the code on all but the last', () => {
    expect(formatReply(reply(250, undefined, ['mx greets you', 'PIPELINING', 'SIZE 10']))).toBe('250-mx greets you\r\n250-PIPELINING\r\n250 SIZE 10\r\n');
  });

  test('client text quoted in a reply cannot break the line or forge another reply', () => {
    expect(formatReply(reply(553, '5.1.7', 'invalid sender <a\r\n250 ok\0>'))).toBe('553 5.1.7 invalid sender <a  250 ok >\r\n');
    expect(formatReply(reply(250, undefined, ['x\ny', 'z\r']))).toBe('250-x y\r\n250 z \r\n');
  });

  test('other control characters quoted from the client are blanked too', () => {
    expect(formatReply(reply(553, '5.1.3', 'invalid recipient <"a\x1b[31m\x7f"@x>'))).toBe('553 5.1.3 invalid recipient <"a [31m "@x>\r\n');
  });
});
