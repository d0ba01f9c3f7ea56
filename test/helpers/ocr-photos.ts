/**
 * The OCR test set, made here from `../shared/photos`: a word or two from WORDS rendered with sharp + SVG text
 * (DejaVu fonts through fontconfig) onto real photos, under one condition each — size, font, rotation,
 * colour without an outline. The same seed gives the same set, so test/ocr-*.test.ts and bench/ocr.ts measure
 * the same images. Nothing is written into the project: the photos live in memory (or in a temp folder).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../src/util/seeded-random.js';
import { sharedPath } from './shared.js';

/** Numbers, accented letters, two-word phrases: what people search their photos for. */
export const WORDS = [
  'ZEPPELIN', 'Bakery', 'Q3 roadmap', '2024', 'Receipt', 'café', 'Müller', 'façade', 'naïve', 'Señor',
  'Lisbon', 'harbour', 'Exit 12', 'invoice', 'parking', 'élan', 'über', 'Zürich', '7 days', 'total 18.90',
  'open 9-17', 'coffee', 'Garçon', 'Ålesund',
] as const;

export interface OcrCondition {
  name: string;
  font: string;
  weight: 'normal' | 'bold';
  size: number;
  /** Degrees, clockwise. */
  rotate: number;
  /** Fill and outline; no outline: coloured letters straight on the photo. */
  fill: 'white' | 'colour';
  outline: boolean;
}

const base: OcrCondition = { name: 'plain', font: 'DejaVu Sans', weight: 'normal', size: 56, rotate: 0, fill: 'white', outline: true };

export const CONDITIONS: OcrCondition[] = [
  base,
  { ...base, name: 'small-22px', size: 22 },
  { ...base, name: 'large-110px', size: 110 },
  { ...base, name: 'serif-bold', font: 'DejaVu Serif', weight: 'bold' },
  { ...base, name: 'mono', font: 'DejaVu Sans Mono' },
  { ...base, name: 'rotated-15', rotate: 15 },
  { ...base, name: 'rotated-40', rotate: -40 },
  { ...base, name: 'vertical-90', rotate: 90 },
  { ...base, name: 'colour-no-outline', fill: 'colour', outline: false },
];

export interface OcrPhoto {
  name: string;
  condition: string;
  /** The text rendered, as written. */
  truth: string;
  /** Encoded PNG. */
  png: Buffer;
}

/** Photos with lots going on (fur, feathers, machinery, water): the busy backgrounds text sits on. */
export function backgroundPhotos(): string[] {
  const dir = sharedPath('photos');
  if (!dir) return [];
  const skimage = ['astronaut.png', 'chelsea.png', 'coffee.png', 'horse.png', 'motorcycle_right.png', 'rocket.jpg'].map((f) => join(dir, 'skimage', f));
  const labeled = ['fishes', 'renewable', 'tools', 'others'].flatMap((sub) => {
    const d = join(dir, 'labeled', sub);
    return readdirSync(d)
      .filter((f) => /\.(jpe?g|png|webp)$/i.test(f))
      .sort()
      .slice(0, 3)
      .map((f) => join(d, f));
  });
  return [...skimage, ...labeled];
}

const COLOURS = ['#e02020', '#ffd400', '#1050ff', '#00a040', '#202020', '#ff7a00'];
const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Renders `perCondition` photos for each condition (default all of CONDITIONS), deterministically. */
export async function makeOcrPhotos(perCondition: number, conditions: OcrCondition[] = CONDITIONS, seed = 16): Promise<OcrPhoto[]> {
  const backgrounds = backgroundPhotos();
  if (backgrounds.length === 0) return [];
  const random = seededRandom(seed);
  const out: OcrPhoto[] = [];
  let k = 0;
  for (const c of conditions) {
    for (let i = 0; i < perCondition; i++, k++) {
      const truth = WORDS[k % WORDS.length]!;
      const bg = backgrounds[k % backgrounds.length]!;
      const photo = sharp(bg).rotate().resize(800, 800, { fit: 'inside' }).removeAlpha();
      const { data, info } = await photo.raw().toBuffer({ resolveWithObject: true });
      const { width, height } = info;
      // Extent of the text, rotated: keep it wholly inside the photo.
      const advance = c.font.includes('Mono') ? 0.62 : 0.66;
      const tw = truth.length * c.size * advance;
      const th = c.size * 1.2;
      const rad = (c.rotate * Math.PI) / 180;
      const ex = Math.abs(tw * Math.cos(rad)) + Math.abs(th * Math.sin(rad));
      const ey = Math.abs(tw * Math.sin(rad)) + Math.abs(th * Math.cos(rad));
      const cx = ex >= width ? width / 2 : ex / 2 + random() * (width - ex);
      const cy = ey >= height ? height / 2 : ey / 2 + random() * (height - ey);
      const fill = c.fill === 'white' ? '#ffffff' : COLOURS[Math.floor(random() * COLOURS.length)]!;
      const stroke = c.outline ? `stroke="#000000" stroke-width="${Math.max(1, c.size / 18).toFixed(1)}" paint-order="stroke"` : '';
      const svg =
        `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
        `<text x="${cx.toFixed(1)}" y="${cy.toFixed(1)}" font-family="${c.font}" font-weight="${c.weight}" font-size="${c.size}" ` +
        `text-anchor="middle" dominant-baseline="central" fill="${fill}" ${stroke} transform="rotate(${c.rotate} ${cx.toFixed(1)} ${cy.toFixed(1)})">` +
        `${escapeXml(truth)}</text></svg>`;
      const png = await sharp(data, { raw: { width, height, channels: 3 } })
        .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
        .png({ compressionLevel: 1 })
        .toBuffer();
      out.push({ name: `${c.name}-${i}`, condition: c.name, truth, png });
    }
  }
  return out;
}

/** Levenshtein distance over code points. */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[y.length]!;
}

/**
 * Character error rate of what was read against the truth: the best single line (a photo may hold other
 * text, and the word may be split over two boxes, so the lines joined by a space are tried too), capped at 1.
 */
export function characterErrorRate(truth: string, lines: readonly string[]): number {
  const n = [...truth].length;
  const candidates = [...lines, lines.join(' ')];
  const best = Math.min(n, ...candidates.map((l) => editDistance(l, truth)));
  return best / n;
}

/** Lower case without accents: how search compares (the recogniser's dictionary lacks most accented letters). */
export function fold(s: string): string {
  return s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/**
 * Words of the truth found among the whitespace-separated tokens read. `exact`: case and accents as written;
 * `folded`: both sides through fold(), as a search for the word would match.
 */
export function wordsFound(truth: string, lines: readonly string[], mode: 'exact' | 'folded' = 'exact'): { found: number; total: number } {
  const f = mode === 'folded' ? fold : (x: string) => x;
  const tokens = new Set(f(lines.join(' ')).split(/\s+/).filter(Boolean));
  const words = f(truth).split(/\s+/);
  return { found: words.filter((w) => tokens.has(w)).length, total: words.length };
}
