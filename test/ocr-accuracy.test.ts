/**
 * What the engine reads on the real PP-OCRv4 weights, per condition of the rendered set (test/helpers/
 * ocr-photos.ts, 6 photos per condition, the same images bench:ocr measures) and on skimage/page.png.
 * The bounds are the rates measured here (see BENCHMARKS.md "Text in photos") with a margin of about one
 * photo's worth, so a change that reads worse fails and one that reads as well passes on any machine.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRgb } from '../src/model/image-decode.js';
import { OcrEngine } from '../src/ocr/ocr-engine.js';
import { characterErrorRate, makeOcrPhotos, wordsFound, type OcrPhoto } from './helpers/ocr-photos.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

/** Measured (CER, folded word recall) per condition, 6 photos each, seed 16. */
const MEASURED: Record<string, { cer: number; recall: number }> = {
  plain: { cer: 0.021, recall: 0.857 },
  'small-22px': { cer: 0.422, recall: 0.667 },
  'large-110px': { cer: 0.042, recall: 1 },
  'serif-bold': { cer: 0.052, recall: 1 },
  mono: { cer: 0.058, recall: 0.714 },
  'rotated-15': { cer: 0.15, recall: 1 },
  'rotated-40': { cer: 0.111, recall: 1 },
  'vertical-90': { cer: 0.172, recall: 0.667 },
  'colour-no-outline': { cer: 0, recall: 1 },
};
const CER_MARGIN = 0.1;
const RECALL_MARGIN = 0.2;

const PAGE_TRUTH = [
  'Region-based segmentation',
  'Let us first determine markers of the coins and the',
  'background. These markers are pixels that we can label',
  'unambiguously as either object or background. Here,',
  'the markers are found at the two extreme parts of the',
  'histogram of grey values:',
  '>>> markers = np.zeros_like(coins)',
].join(' ');

const page = sharedPath('photos', 'skimage', 'page.png');

describe.skipIf(!page)(`OCR accuracy on rendered photos and page.png ${page ? '' : NEEDS_SHARED}`, () => {
  let engine: OcrEngine;
  let photos: OcrPhoto[];
  const read = new Map<string, string[]>();
  beforeAll(async () => {
    engine = await OcrEngine.open({ session: { threads: 2, providers: ['cpu'] } });
    photos = await makeOcrPhotos(6);
    for (const p of photos) read.set(p.name, (await engine.recognize(await decodeRgb(p.png))).lines.map((l) => l.text));
  }, 600_000);
  afterAll(async () => {
    await engine?.release();
  });

  it('per condition: character error rate and word recall at least as good as measured', () => {
    const table: Record<string, { cer: number; recall: number; exact: number }> = {};
    for (const cond of new Set(photos.map((p) => p.condition))) {
      const ps = photos.filter((p) => p.condition === cond);
      const cer = ps.reduce((a, p) => a + characterErrorRate(p.truth, read.get(p.name)!), 0) / ps.length;
      const count = (mode: 'exact' | 'folded') => {
        const w = ps.map((p) => wordsFound(p.truth, read.get(p.name)!, mode));
        return w.reduce((a, x) => a + x.found, 0) / w.reduce((a, x) => a + x.total, 0);
      };
      table[cond] = { cer: +cer.toFixed(3), recall: +count('folded').toFixed(3), exact: +count('exact').toFixed(3) };
    }
    console.log(JSON.stringify(table));
    // Every condition of the set is asserted, so a new condition must bring its measured rates.
    expect(Object.keys(table).sort()).toEqual(Object.keys(MEASURED).sort());
    for (const [cond, m] of Object.entries(MEASURED)) {
      expect(table[cond], cond).toBeDefined();
      expect(table[cond]!.cer, `${cond} CER`).toBeLessThanOrEqual(m.cer + CER_MARGIN);
      expect(table[cond]!.recall, `${cond} folded word recall`).toBeGreaterThanOrEqual(m.recall - RECALL_MARGIN);
    }
  });

  it('page.png: the whole page within its measured error rate', async () => {
    const lines = (await engine.recognize(await decodeRgb(readFileSync(page!)))).lines.map((l) => l.text);
    const cer = characterErrorRate(PAGE_TRUTH, [lines.join(' ')]);
    console.log(`page.png CER ${cer.toFixed(3)}`);
    // Measured: CER 0.030, 39 of the 47 words (the misses are words run together: 'basedsegmentation').
    expect(cer).toBeLessThanOrEqual(0.03 + 0.02);
    expect(wordsFound(PAGE_TRUTH, lines, 'folded').found).toBeGreaterThanOrEqual(36);
  });
});
