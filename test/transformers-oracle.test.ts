/**
 * An independent oracle: the same self-built model folder (HF / transformers.js layout) run through
 * transformers.js — its own tokenizer, image processor and CLIP model classes — and through clipdex.
 * Our other references (the TypeScript port of Pillow, our own graph builder) were written by the same hands
 * as the code; this one was not.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import type { ClipTokenizer } from '../src/model/tokenizer.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const clipVocab = sharedPath('clip');
const photos = sharedPath('photos');
const CONTEXT = 77;

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-oracle-'));
let model: ClipModel;
let tokenizer: Awaited<ReturnType<typeof tf.AutoTokenizer.from_pretrained>>;
let textModel: Awaited<ReturnType<typeof tf.CLIPTextModelWithProjection.from_pretrained>>;
let visionModel: Awaited<ReturnType<typeof tf.CLIPVisionModelWithProjection.from_pretrained>>;
let processor: Awaited<ReturnType<typeof tf.AutoProcessor.from_pretrained>>;

beforeAll(async () => {
  // The real CLIP vocabulary where ../shared has it (so BPE merges, unicode and punctuation are CLIP's), else
  // the builder's byte-level one: the comparison holds either way.
  const built = await buildTinyModel({ out: join(tmp, 'tiny'), seed: 5, ...(clipVocab ? { vocab: clipVocab } : {}) });
  model = await ClipModel.load(await readModelDir(built.dir), { providers: ['cpu'], threads: 1 });

  tf.env.allowRemoteModels = false;
  tf.env.allowLocalModels = true;
  tf.env.localModelPath = `${tmp}/`;
  const options = { local_files_only: true } as const;
  const sessions = { ...options, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } } as const;
  [tokenizer, processor, textModel, visionModel] = await Promise.all([
    tf.AutoTokenizer.from_pretrained('tiny', options),
    tf.AutoProcessor.from_pretrained('tiny', options),
    tf.CLIPTextModelWithProjection.from_pretrained('tiny', sessions),
    tf.CLIPVisionModelWithProjection.from_pretrained('tiny', sessions),
  ]);
});
afterAll(async () => {
  await model?.release();
  await Promise.all([textModel?.dispose(), visionModel?.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});

function unit(v: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / norm);
}
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i]!)));

/**
 * transformers.js' token ids for each text, truncated the way OpenAI's clip.tokenize(truncate=True) does:
 * the first 77 ids with the last one replaced by the end token. (transformers.js' own truncation cuts the end
 * token off, and the text tower pools at the first end token, so its embedding of a long text is another
 * token's; clipdex keeps it, as the reference implementation does.)
 */
function theirIds(text: string): { ids: number[]; untruncated: number } {
  const ids = tokenizer.encode(text);
  const untruncated = ids.length;
  if (ids.length > CONTEXT) {
    ids.length = CONTEXT;
    ids[CONTEXT - 1] = tokenizer.eos_token_id!;
  }
  return { ids, untruncated };
}

async function theirTextEmbeddings(idLists: number[][]): Promise<Float32Array[]> {
  const data = new BigInt64Array(idLists.length * CONTEXT).fill(BigInt(tokenizer.pad_token_id!));
  idLists.forEach((ids, row) => ids.forEach((id, k) => (data[row * CONTEXT + k] = BigInt(id))));
  const { text_embeds } = await textModel({ input_ids: new tf.Tensor('int64', data, [idLists.length, CONTEXT]) });
  const dim = text_embeds.dims[1] as number;
  const flat = text_embeds.data as Float32Array;
  return idLists.map((_, row) => unit(flat.subarray(row * dim, (row + 1) * dim)));
}

describe(`text: clipdex equals transformers.js (${clipVocab ? 'CLIP vocabulary' : 'byte-level vocabulary: ../shared/clip not found'})`, () => {
  const PHRASES = [
    'a photo of a cat',
    'A PHOTO OF A DOG',
    '',
    '   ',
    '  Leading and trailing  ',
    'Hello, world!!!',
    "don't stop believin'",
    'rock & roll',
    'e-mail: someone@example.com',
    '3.14159 and 1,000,000',
    'café crème brûlée',
    'Ünïcödé',
    'e\u0301 (combining) vs é (composed)',
    '猫が好き',
    'Привет, мир',
    'مرحبا بالعالم',
    '🐶🐱 pets 🐾',
    '👨‍👩‍👧 family',
    'tab\tand\nnewline  spaces',
    'mojibake: cafÃ©',
    'a very long caption '.repeat(20),
    'x'.repeat(500),
  ];

  it('the same token ids and the same embeddings (max |Δ| ≤ 1e-5) for punctuation, unicode, emoji and text past 77 tokens', async () => {
    const theirs = PHRASES.map(theirIds);
    // The long phrases really are truncated.
    expect(theirs.filter((t) => t.untruncated > CONTEXT).length).toBe(2);
    PHRASES.forEach((text, i) => expect((model.tokenizer as ClipTokenizer).encodeTruncated(text, CONTEXT), JSON.stringify(text)).toEqual(theirs[i]!.ids));

    const ours = await model.embedTexts(PHRASES);
    const reference = await theirTextEmbeddings(theirs.map((t) => t.ids));
    // Measured: 0 (bit-identical) for every phrase; 1e-5 allows another ORT build's summation order.
    const diffs = PHRASES.map((text, i) => ({ text, diff: maxAbsDiff(ours[i]!, reference[i]!) }));
    expect(diffs.filter((d) => !(d.diff <= 1e-5))).toEqual([]);
    // And the bound separates phrases: two different ones are far further apart.
    expect(maxAbsDiff(ours[0]!, reference[1]!)).toBeGreaterThan(1e-2);
  });

  it('HTML entities: clipdex unescapes them as OpenAI’s basic_clean does, which HF’s tokenizer does not', async () => {
    // transformers.js given the unescaped text is the reference for clipdex given the entities.
    const [ours] = await model.embedTexts(['&amp; html &lt;b&gt; &quot;quoted&quot;']);
    const [reference] = await theirTextEmbeddings([theirIds('& html <b> "quoted"').ids]);
    expect(maxAbsDiff(ours!, reference!)).toBeLessThanOrEqual(1e-5);
  });
});

/**
 * Each photo with the disagreement measured here, 1 − cosine between clipdex's and transformers.js'
 * embedding (seed-5 tiny model, sharp 0.35, ORT 1.30). The bound is cosine ≥ 1 − max(2 × measured, 2e-5).
 *
 * Where the disagreement comes from: transformers.js resizes with sharp's affine bicubic, which point-samples
 * without antialiasing, while clipdex resizes with libvips' cubic reduce, the closer match to PIL's
 * antialiased bicubic (DESIGN.md). So the gap grows with how far a photo is scaled and how much fine detail
 * it has: up to 2.5e-3 for the 50×70 orientation pictures (scaled up 4.5×) and 4.2e-3 for the motorcycle,
 * down to 3e-7 where both land on nearly the same pixels. It is deterministic for a given libvips and ORT;
 * twice the measured gap leaves room for their updates, and the 2e-5 floor for thread-count rounding.
 *
 * What the bounds catch (measured against transformers.js' embedding of a deliberately wrong input):
 * the orientation pictures with EXIF rotation ignored 0.979–0.990 (bound 0.9951); yellow_rose's alpha
 * flattened onto black/white/grey instead of dropped 0.935–0.958 (bound 0.99992); rocket squashed instead
 * of centre-cropped 0.99811 (bound 0.99873), mirrored 0.99710; channels swapped 0.928.
 */
const MEASURED: Record<string, number> = {
  'skimage/astronaut.png': 2.75e-4,
  'skimage/camera.png': 4.5e-4,
  'skimage/chelsea.png': 5.71e-5,
  'skimage/coffee.png': 5.7e-5,
  'skimage/horse.png': 2.92e-5,
  'skimage/motorcycle_right.png': 4.16e-3,
  'skimage/page.png': 1.35e-3,
  'skimage/rocket.jpg': 6.37e-4,
  'edge/Dune.jpg': 7.86e-4,
  'edge/Storm.jpg': 3.14e-5,
  'edge/LadyBird.jpg': 2.27e-4,
  'edge/TwoWings.jpg': 4.79e-4,
  // RGBA: alpha dropped by both (decoded RGB kept), not composited.
  'edge/logo.png': 8.2e-5,
  'edge/yellow_rose.lossy-with-alpha.webp': 3.9e-5,
  'edge/coffee.avif': 4.16e-5,
  // EXIF orientation none and 1–8: the same picture once oriented.
  ...Object.fromEntries(Array.from({ length: 9 }, (_, o) => [`edge/orientation_${o}.jpg`, 2.46e-3])),
  // Lossy WebP, most with an alpha channel.
  'labeled/fishes/fish1.webp': 7.34e-4,
  'labeled/fishes/fish10.webp': 1.87e-5,
  'labeled/fishes/fish11.webp': 1.18e-5,
  'labeled/tools/cuttingTool.webp': 4.07e-6,
  'labeled/tools/hammer1.webp': 1.88e-5,
  'labeled/tools/hammer2.webp': 3.03e-7,
  'labeled/renewable/dam1.webp': 4.07e-4,
  'labeled/renewable/dam2.webp': 3.39e-6,
  'labeled/renewable/dam3.webp': 9.14e-7,
  'labeled/others/baseball.webp': 9.85e-5,
  'labeled/others/blackslate.webp': 4.92e-4,
  'labeled/others/bucket.webp': 2.02e-5,
};
const bound = (file: string) => 1 - Math.max(2 * MEASURED[file]!, 2e-5);
/** Files that are one picture: they may be as close to each other as to themselves. */
const samePicture = (a: string, b: string) =>
  a === b || (a.includes('orientation_') && b.includes('orientation_')) || [a, b].every((f) => /coffee\.(png|avif)$/.test(f));

describe.skipIf(!photos)(`images, decoding and preprocessing included: clipdex agrees with transformers.js ${photos ? '' : NEEDS_SHARED}`, () => {
  it('every photo (normal, EXIF-rotated, RGBA, WebP, AVIF, up to 2560 px) within its measured bound, and nearest its own picture', async () => {
    const files = Object.keys(MEASURED);
    const paths = files.map((f) => join(photos!, f));
    expect(paths.filter((p) => !existsSync(p))).toEqual([]);

    const ours = await model.embedImages(paths, { concurrency: 1 });
    const theirs: Float32Array[] = [];
    for (const p of paths) {
      const { image_embeds } = await visionModel(await processor(await tf.RawImage.read(p)));
      theirs.push(unit(image_embeds.data as Float32Array));
    }

    const report = files.map((file, i) => {
      const r = ours[i]!;
      if (!r.ok) return { file, cosine: Number.NaN, bound: bound(file), nearestOther: Number.NaN, error: r.error.message };
      const others = files.flatMap((other, j) => (samePicture(file, other) ? [] : [cosine(r.embedding, theirs[j]!)]));
      return { file, cosine: cosine(r.embedding, theirs[i]!), bound: bound(file), nearestOther: Math.max(...others) };
    });
    // Within its bound, and the bound means something: no other picture comes as close.
    expect(report.filter((x) => !(x.cosine >= x.bound))).toEqual([]);
    expect(report.filter((x) => !(x.nearestOther < x.bound))).toEqual([]);
  });
});
