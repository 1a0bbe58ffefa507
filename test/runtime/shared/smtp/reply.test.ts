// parseReply: the code, the enhanced code and the text of a server's reply;
// a line break or a bare CR inside it (a broken or hostile server) is a
// space, so the codes still parse and the text carries no CR onward.
import { parseReply } from '../../../../runtime/shared/smtp/reply';

test('a reply line parses into its code, enhanced code and text', () => {
  expect(parseReply('550 5.1.1 no such user')).toEqual({ code: 550, enhanced: '5.1.1', text: 'no such user' });
  expect(parseReply('250 ok\r\n')).toEqual({ code: 250, enhanced: undefined, text: 'ok' });
});

test('a bare CR or LF inside the reply is a space: the enhanced code still parses, and no CR is left in the text', () => {
  expect(parseReply('550 5.1.1 no such\ruser here')).toEqual({ code: 550, enhanced: '5.1.1', text: 'no such user here' });
  expect(parseReply('451 4.7.1 try\r\nlater\nplease')).toEqual({ code: 451, enhanced: '4.7.1', text: 'try later please' });
});
