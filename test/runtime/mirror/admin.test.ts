// The mirror's admin port as a web page could reach it: POST /promote and
// /switchover take loopback as their only credential, so a request a browser
// sends (it carries Origin) is refused and changes nothing, while the CLI's
// (no Origin) is still taken.
import { startMirrorAdmin } from '../../../runtime/mirror/admin';
import { readState } from '../../../runtime/mirror/state';
import { inProcessMirrors } from '../../helpers/mirror-daemons';
import { getFreePort } from '../../helpers/postfix-tools';

const mirrors = inProcessMirrors('volley-mirror-admin-');

async function lone(): Promise<{ url: string; root: string }> {
  const { daemon, root } = await mirrors.node('lone', { self: await getFreePort(), peer: await getFreePort() });
  const admin = await startMirrorAdmin(daemon);
  mirrors.closing.push(() => admin.close());
  return { url: `http://127.0.0.1:${admin.port}`, root };
}

test('a forced promotion sent by a web page (Origin) is refused 403 and the node stays secondary; the same without Origin promotes', async () => {
  const { url, root } = await lone();
  const fromPage = await fetch(`${url}/promote?force=1`, { method: 'POST', headers: { origin: 'http://rebound.example' } });
  expect(fromPage.status).toBe(403);
  expect(await fromPage.json()).toMatchObject({ code: 'EFORBIDDEN', error: expect.stringMatching(/web page/) });
  expect(readState(root)).toMatchObject({ role: 'secondary', epoch: 0 });

  const fromCli = await fetch(`${url}/promote?force=1`, { method: 'POST' });
  expect(await fromCli.json()).toEqual({ role: 'primary', epoch: 1 });
});

test('a switchover sent by a web page (Origin) is refused 403 before anything starts', async () => {
  const { url } = await lone();
  const fromPage = await fetch(`${url}/switchover?timeout=1s`, { method: 'POST', headers: { origin: 'null' } });
  expect(fromPage.status).toBe(403);
  expect(await fromPage.json()).toMatchObject({ code: 'EFORBIDDEN' });
});
