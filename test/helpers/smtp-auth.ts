// Whether a user may AUTH PLAIN (after STARTTLS) on an MTA's SMTP port: what
// the config-refresh tests read to see which config a worker runs.
import { SmtpDialog } from './smtp-dialog';

export async function authOk(port: number, user: string, password: string): Promise<boolean> {
  const s = await SmtpDialog.open(port);
  await s.reply();
  await s.command('EHLO c.test');
  await s.starttls();
  await s.command('EHLO c.test');
  const r = await s.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
  await s.quit();
  return r.code === 235;
}
