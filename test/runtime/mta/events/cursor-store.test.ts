import { readdirSync, writeFileSync } from 'node:fs';
import { CursorStore } from '../../../../runtime/mta/events/cursor-store';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir();

test('a saved cursor loads back as it was, with no temporary file left beside it; a sink that never ran has none', async () => {
  const store = new CursorStore(dir);
  expect(store.load('hook')).toBeUndefined();
  const cursor = { w0: { file: 'w0.20261205T000000000Z-000001.jsonl', offset: 1234 }, primary: { file: 'primary.20261205T000000000Z-000001.jsonl', offset: 0 } };
  await store.save('hook', cursor);
  await store.save('hook', { ...cursor, w0: { ...cursor.w0, offset: 2000 } });
  expect(new CursorStore(dir).load('hook')).toEqual({ ...cursor, w0: { ...cursor.w0, offset: 2000 } });
  expect(readdirSync(store.dir)).toEqual(['hook.json']);
});

test('a damaged cursor is a clear error naming the file, not a silent restart from elsewhere', () => {
  const store = new CursorStore(dir);
  writeFileSync(store.path('broken'), '{"producers": ');
  expect(() => store.load('broken')).toThrow(expect.objectContaining({ code: 'ECURSOR', message: expect.stringContaining(store.path('broken')) }));
});

test('two saves of one cursor at once (the new sink\'s first save and its first acknowledgement) both succeed and leave one whole cursor', async () => {
  const store = new CursorStore(dir);
  const at = (offset: number) => ({ w0: { file: 'w0.20261205T000000000Z-000001.jsonl', offset } });
  const results = await Promise.allSettled([store.save('racing', at(1)), store.save('racing', at(2)), store.save('racing', at(3))]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  expect([1, 2, 3]).toContain(new CursorStore(dir).load('racing')!.w0.offset);
  expect(readdirSync(store.dir).filter((f) => f.includes('racing'))).toEqual(['racing.json']);
});
