/** Folder-as-label finds photos whether the folder is named through a symlink or by its real path. */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { folderLabelRows } from '../src/train/label-import.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-labels-'));
const real = join(tmp, 'real');
const link = join(tmp, 'link');
let library: Library;

beforeAll(async () => {
  mkdirSync(join(real, 'boats'), { recursive: true });
  symlinkSync(real, link);
  // Indexed through the symlink, as when a root is added by a linked path (../shared in CI is one).
  const files = [0, 1].map((i) => join(link, 'boats', `b${i}.png`));
  for (const [i, f] of files.entries()) await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 50 * i, g: 90, b: 200 } } }).png().toFile(f);
  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  await indexFiles(library, link, files);
});
afterAll(async () => {
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

it('labels the photos under a folder named by the path they were indexed under, or by its real path', () => {
  for (const folder of [link, real, join(link, 'boats')]) {
    const rows = folderLabelRows(library, folder);
    expect(rows.map((r) => r.caption)).toEqual(['a photo of boats', 'a photo of boats']);
  }
  expect(folderLabelRows(library, join(tmp, 'elsewhere'))).toEqual([]);
});
