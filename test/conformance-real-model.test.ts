/**
 * Conformance with the real OpenAI ViT-B/32: when CLIPDEX_REAL_MODEL_DIR points at an export
 * (either layout), the CLIP notebook's eight images must each rank first for their own description,
 * with cosine similarities within ±0.02 of those the notebook prints (../shared/photos/README.md).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { sharedPath } from './helpers/shared.js';

const NOTEBOOK: [file: string, description: string, cos: number][] = [
  ['page.png', 'a page of text about segmentation', 0.35],
  ['astronaut.png', 'a portrait of an astronaut with the American flag', 0.28],
  ['rocket.jpg', 'a rocket standing on a launchpad', 0.3],
  ['chelsea.png', 'a facial photo of a tabby cat', 0.31],
  ['horse.png', 'a black-and-white silhouette of a horse', 0.35],
  ['coffee.png', 'a cup of coffee on a saucer', 0.29],
  ['camera.png', 'a person looking at a camera on a tripod', 0.29],
  ['motorcycle_right.png', 'a red motorcycle standing in a garage', 0.32],
];

const modelDir = process.env.CLIPDEX_REAL_MODEL_DIR;
const skimage = sharedPath('photos', 'skimage');
const missing = [
  modelDir ? null : 'CLIPDEX_REAL_MODEL_DIR is not set (point it at a real OpenAI ViT-B/32 export)',
  skimage ? null : '../shared/photos/skimage not found',
].filter(Boolean);

describe.skipIf(missing.length > 0)(`real ViT-B/32 against the CLIP notebook${missing.length ? ` (skipped: ${missing.join('; ')})` : ''}`, () => {
  it('ranks each description’s own image first, with the notebook’s similarities ±0.02', async () => {
    const model = await ClipModel.load(await readModelDir(modelDir!));
    const images = await model.embedImages(NOTEBOOK.map(([f]) => join(skimage!, f)));
    const texts = await model.embedTexts(NOTEBOOK.map(([, d]) => `This is ${d}`));
    const sim = texts.map((t) =>
      images.map((r) => {
        if (!r.ok) throw r.error;
        return r.embedding.reduce((s, x, i) => s + x * t[i]!, 0);
      }),
    );
    NOTEBOOK.forEach(([file, , cos], i) => {
      const row = sim[i]!;
      expect(row.indexOf(Math.max(...row)), `${file} ranks first for its description`).toBe(i);
      expect(Math.abs(row[i]! - cos), `${file}: ${row[i]!.toFixed(3)} vs ${cos}`).toBeLessThanOrEqual(0.02);
    });
    await model.release();
  });
});
