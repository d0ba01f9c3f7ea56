/**
 * A photo that failed to index has no embedding: labeling it, or searching by it, is refused up front with
 * the reason it failed (CLI and API alike), instead of "1 label added" and a training run that later
 * leaves it out as "not indexed yet".
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { serveLibrary } from './helpers/served-library.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-label-failed-'));
const photos = join(tmp, 'photos');
const dataDir = join(tmp, 'data');
const good = join(photos, 'good.jpg');
const other = join(photos, 'other.jpg');
const broken = join(photos, 'broken.jpg');
let model: string;
let ids: { good: number; other: number; broken: number };
let failure: { code: string; message: string };

const cli = (...args: string[]) => runCli(['--data-dir', dataDir, '--model', model, ...args]);

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  await writeJpeg(good, 1);
  await writeJpeg(other, 2);
  writeFileSync(broken, 'not a jpeg at all, only text with a .jpg name');
  model = await tinyModel(tmp);
  const library = await Library.open({ dataDir, model });
  try {
    const [g, o, b] = await indexFiles(library, photos, [good, other, broken]);
    ids = { good: g!, other: o!, broken: b! };
    const record = library.images.get(ids.broken)!;
    expect(record.status).toBe('error');
    failure = { code: record.errorCode!, message: record.errorMessage! };
    expect(failure.code).toMatch(/^[A-Z_]+$/);
  } finally {
    await library.close();
  }
}, 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function labelCount(): Promise<number> {
  const r = await cli('--json', 'labels', 'list');
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { total: number }).total;
}

describe('the CLI', () => {
  it('`clipdex label` refuses a failed photo, by path or by id, saying why it failed, and adds nothing', async () => {
    for (const photo of [broken, String(ids.broken)]) {
      const r = await cli('label', photo, 'a broken photo');
      expect(r.code, photo).toBe(1);
      expect(r.stdout, photo).toBe('');
      expect(r.stderr, photo).toContain(`photo ${ids.broken} (${broken}) failed to index (${failure.code}: ${failure.message}), so it cannot be labeled`);
    }
    expect(await labelCount()).toBe(0);
  });

  it('labels the good photos of a mixed list and reports the failed one as a problem', async () => {
    const r = await cli('label', good, broken, '--caption', 'a mixed bag');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('1 label added, 0 already there, 1 problem.');
    expect(r.stderr).toMatch(/argument 2.*failed to index/);
    expect(await labelCount()).toBe(1);
  });

  it('`labels import` reports a failed photo\'s row with the reason, and fails when no row could be used', async () => {
    const csv = join(tmp, 'labels.csv');
    writeFileSync(csv, `photo,caption\n${other},a second photo\n${broken},a second photo\n`);
    const mixed = await cli('labels', 'import', csv);
    expect(mixed.code, mixed.stderr).toBe(0);
    expect(mixed.stdout).toContain('1 label added, 0 already there, 1 problem.');
    expect(mixed.stderr).toMatch(new RegExp(`line 3.*failed to index \\(${failure.code}`));
    const onlyBroken = join(tmp, 'broken.json');
    writeFileSync(onlyBroken, JSON.stringify([{ photo: broken, caption: 'still broken' }]));
    const none = await cli('labels', 'import', onlyBroken);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('0 labels added, 0 already there, 1 problem.');
    expect(await labelCount()).toBe(2);
  });

  it('`clipdex similar` on a failed photo exits as on an unknown id, with the reason it failed', async () => {
    const unknown = await cli('similar', '999999');
    const failed = await cli('similar', String(ids.broken));
    expect(unknown.code).not.toBe(0);
    expect(failed.code).toBe(unknown.code);
    expect(unknown.stderr).toMatch(/no photo with id 999999/);
    expect(failed.stderr).toContain(`failed to index (${failure.code}: ${failure.message}), so it cannot be searched by`);
  });
});

describe('the API', () => {
  const served = serveLibrary(() => ({ dataDir, model }));

  const api = (path: string, body?: unknown) => (body === undefined ? served.api(path) : served.postJson(path, body));

  it('POST /api/labels refuses a failed photo with 409 PHOTO_FAILED and the reason, and adds nothing', async () => {
    const before = served.library.pairs.forImage(ids.broken).length;
    const r = await api('/api/labels', { imageIds: [ids.broken], caption: 'a broken photo' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('PHOTO_FAILED');
    expect(r.body.error.message).toContain(`failed to index (${failure.code}: ${failure.message}), so it cannot be labeled`);
    expect(served.library.pairs.forImage(ids.broken).length).toBe(before);
  });

  it('labels the good photos of a mixed request and names the failed one among the problems', async () => {
    const r = await api('/api/labels', { imageIds: [ids.other, ids.broken], caption: 'a third caption' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ added: 1, problemCount: 1, problems: [{ photo: String(ids.broken), code: 'PHOTO_FAILED' }] });
    const imported = await api('/api/labels/import', { rows: [{ photo: broken, caption: 'imported' }] });
    expect(imported.body).toMatchObject({ added: 0, problems: [{ code: 'PHOTO_FAILED' }] });
    expect(served.library.pairs.forImage(ids.broken)).toEqual([]);
  });

  it('refuses to search by a failed photo with its reason, and answers an unknown one NOT_FOUND', async () => {
    const failed = await api(`/api/images/${ids.broken}/similar`);
    expect([failed.status, failed.body.error.code]).toEqual([409, 'PHOTO_FAILED']);
    expect(failed.body.error.message).toContain(`failed to index (${failure.code}`);
    const unknown = await api('/api/images/999999/similar');
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'NOT_FOUND']);
  });
});
