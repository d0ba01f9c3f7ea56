/**
 * Conformance with real exports. CLIPDEX_REAL_MODEL_DIR names one model folder, or several separated by the
 * platform's path delimiter (':' on Linux and macOS), in either layout; each is read as its family (clip,
 * siglip, siglip2, xlm-roberta-clip, m-clip, nllb-clip) and checked:
 * - every family: it loads; image and text embeddings have the model's dimension and unit length; each of the
 *   CLIP notebook's eight images ranks first for its own description (../shared/photos/README.md), which every
 *   model in Immich's table, the weakest at 48% Crossmodal-3600 recall, does for such distinct pictures;
 * - OpenAI CLIP (ViT-B/32): the notebook's cosine similarities ±0.02 as well;
 * - multilingual families (siglip2, xlm-roberta-clip, m-clip, nllb-clip): German and French descriptions rank
 *   their image first too (NLLB-CLIP told the language, and left to detect it).
 * A family without a folder skips with a message naming it.
 */
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { MODEL_FAMILIES, type ModelFamily } from '../src/model/manifest.js';
import { type ModelSpec, readModelDir } from '../src/model/model-dir.js';
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

/** The same descriptions in German and French, for the multilingual families. */
const TRANSLATED: Record<'deu_Latn' | 'fra_Latn', string[]> = {
  deu_Latn: [
    'eine Textseite über Segmentierung',
    'ein Porträt eines Astronauten mit der amerikanischen Flagge',
    'eine Rakete auf einer Startrampe',
    'ein Gesichtsfoto einer getigerten Katze',
    'eine Schwarz-Weiß-Silhouette eines Pferdes',
    'eine Tasse Kaffee auf einer Untertasse',
    'eine Person, die auf eine Kamera auf einem Stativ schaut',
    'ein rotes Motorrad in einer Garage',
  ],
  fra_Latn: [
    'une page de texte sur la segmentation',
    "un portrait d'un astronaute avec le drapeau américain",
    'une fusée sur un pas de tir',
    "une photo du visage d'un chat tigré",
    "une silhouette en noir et blanc d'un cheval",
    'une tasse de café sur une soucoupe',
    'une personne regardant un appareil photo sur un trépied',
    'une moto rouge dans un garage',
  ],
};
const MULTILINGUAL: readonly ModelFamily[] = ['siglip2', 'xlm-roberta-clip', 'm-clip', 'nllb-clip'];

const skimage = sharedPath('photos', 'skimage');
const folders = (process.env.CLIPDEX_REAL_MODEL_DIR ?? '').split(delimiter).filter((d) => d !== '');
const specs: ModelSpec[] = [];
for (const dir of folders) if (existsSync(dir)) specs.push(await readModelDir(dir));

function unitLength(v: Float32Array): number {
  return Math.hypot(...Array.from(v));
}

/** rows[t][i]: cosine of text t and image i. */
function similarities(texts: Float32Array[], images: Float32Array[]): number[][] {
  return texts.map((t) => images.map((im) => im.reduce((s, x, i) => s + x * t[i]!, 0)));
}

function expectOwnImageFirst(sim: number[][], what: string): void {
  NOTEBOOK.forEach(([file], i) => {
    const row = sim[i]!;
    expect(row.indexOf(Math.max(...row)), `${file} ranks first for its ${what} description`).toBe(i);
  });
}

for (const family of MODEL_FAMILIES) {
  const spec = specs.find((s) => (s.family ?? 'clip') === family);
  const missing = [
    spec ? null : `no ${family} folder in CLIPDEX_REAL_MODEL_DIR (set it to a real ${family} export, several separated by '${delimiter}')`,
    skimage ? null : '../shared/photos/skimage not found',
  ].filter(Boolean);
  describe.skipIf(missing.length > 0)(`real ${family} model against the CLIP notebook${missing.length ? ` (skipped: ${missing.join('; ')})` : ''}`, () => {
    it('loads, embeds to unit vectors of its dimension, and ranks each description’s own image first', async () => {
      const model = await ClipModel.load(spec!);
      try {
        const results = await model.embedImages(NOTEBOOK.map(([f]) => join(skimage!, f)));
        const images = results.map((r) => {
          if (!r.ok) throw r.error;
          return r.embedding;
        });
        const descriptions = NOTEBOOK.map(([, d]) => (family === 'clip' ? `This is ${d}` : d));
        const texts = await model.embedTexts(descriptions, { language: 'eng_Latn' });
        for (const v of [...images, ...texts]) {
          expect(v.length).toBe(model.dim);
          expect(unitLength(v)).toBeCloseTo(1, 4);
        }
        if (spec!.embeddingDim !== null) expect(model.dim).toBe(spec!.embeddingDim);
        const sim = similarities(texts, images);
        expectOwnImageFirst(sim, 'English');
        if (family === 'clip') {
          NOTEBOOK.forEach(([file, , cos], i) => {
            expect(Math.abs(sim[i]![i]! - cos), `${file}: ${sim[i]![i]!.toFixed(3)} vs ${cos}`).toBeLessThanOrEqual(0.02);
          });
        }
        if (MULTILINGUAL.includes(family)) {
          for (const [language, phrases] of Object.entries(TRANSLATED)) {
            expectOwnImageFirst(similarities(await model.embedTexts(phrases, { language }), images), language);
            if (family === 'nllb-clip') {
              expectOwnImageFirst(similarities(await model.embedTexts(phrases), images), `${language} (detected)`);
            }
          }
        }
      } finally {
        await model.release();
      }
    }, 300_000);
  });
}
