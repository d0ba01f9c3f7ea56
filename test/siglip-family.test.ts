/**
 * SigLIP and SigLIP2 on self-built models, in both export layouts:
 * - token ids equal the `tokenizers` library's own, read independently from the same tokenizer.json and set up
 *   as Immich's ML service does (pad to the context with tokenizer_config's pad_token, truncate to it);
 * - preprocessing equals transformers.js' SiglipImageProcessor on the shared photos within a measured bound;
 * - text and image embeddings equal transformers.js' SiglipTextModel / SiglipVisionModel on the same folder;
 * - a real library searches with it, and results carry the model's calibration.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { Tokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Library } from '../src/library/library.js';
import { ClipModel } from '../src/model/clip-model.js';
import { HfTokenizer, nativeBinaryName } from '../src/model/hf-tokenizer.js';
import { preprocessBatch } from '../src/model/image-preprocess.js';
import { calibratedProbability } from '../src/model/manifest.js';
import { readModelDir } from '../src/model/model-dir.js';
import { canonicalizeText } from '../src/model/text-clean.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { openLibrary } from './helpers/ingest-library.js';
import { indexFiles } from './helpers/library-fixture.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const photos = sharedPath('photos');
const tmp = mkdtempSync(join(tmpdir(), 'clipdex-siglip-'));
const CONTEXT = 64;
const PRESETS = ['siglip-tiny', 'siglip2-tiny'] as const;
const dirs: Record<string, string> = {};

beforeAll(async () => {
  for (const preset of PRESETS) {
    for (const layout of ['hf', 'openclip'] as const) {
      dirs[`${preset}/${layout}`] = (await buildTinyModel({ out: join(tmp, `${preset}-${layout}`), preset, layout, seed: 7 })).dir;
    }
  }
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SENTENCES = [
  'a photo of a dog',
  'Café crème brûlée à Paris, été 2023!',
  'Straße über schöne Berge — niño en la playa',
  '海の写真と猫',
  'قطة على الشاطئ',
  'कुत्ता और बिल्ली',
  'Привет, кошка',
  '🐶🐱 pets 🐾 👨‍👩‍👧 👍🏽',
  'ＦＵＬＬＷＩＤＴＨ　ﬁsh ① tab\tand\nnewline   spaces',
  'e\u0301 combining vs é composed',
  'snake_case and #hashtags (in parens) & "quotes"',
  'a very long caption of a dog on the beach at sunset '.repeat(12),
  'x'.repeat(300),
  '',
  '   ',
];

/** The reference: the `tokenizers` library on the file itself, padded and truncated as Immich's textual.py does. */
async function referenceIds(dir: string, texts: string[]): Promise<number[][]> {
  const tokenizer = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
  const padToken = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')).pad_token as string;
  const padId = tokenizer.tokenToId(padToken)!;
  tokenizer.setPadding({ maxLength: CONTEXT, padId, padToken });
  tokenizer.setTruncation(CONTEXT);
  const out: number[][] = [];
  for (const text of texts) out.push((await tokenizer.encode(text)).getIds());
  return out;
}

describe('tokenizers: clipdex ids equal the tokenizers library on a multilingual list', () => {
  for (const preset of PRESETS) {
    it(`${preset}: every sentence, padded to 64 with the model's pad id and truncated to 64 with the end token kept`, async () => {
      const dir = dirs[`${preset}/hf`]!;
      const ours = await HfTokenizer.fromDir(dir, { contextLength: CONTEXT, cleaning: 'none' });
      const got = await ours.tokenize(SENTENCES, CONTEXT);
      const want = await referenceIds(dir, SENTENCES);
      SENTENCES.forEach((s, i) => expect(got[i]!.ids, JSON.stringify(s)).toEqual(want[i]));
      const eos = preset === 'siglip-tiny' ? 1 : 1;
      const pad = preset === 'siglip-tiny' ? 1 : 0;
      expect(ours.padId).toBe(pad);
      for (const row of got) {
        expect(row.ids).toHaveLength(CONTEXT);
        expect(row.mask.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
      }
      // The long texts were cut and still end with the end token; the empty one is the end token alone.
      const long = got[SENTENCES.length - 4]!;
      expect(long.mask.every((m) => m === 1)).toBe(true);
      expect(long.ids[CONTEXT - 1]).toBe(eos);
      expect(got[SENTENCES.length - 2]!.ids[0]).toBe(eos);
      expect(got[SENTENCES.length - 2]!.mask.slice(1).every((m) => m === 0)).toBe(true);
      // Not a degenerate tokenizer: the scripts give different rows, and some text needs more than single pieces.
      expect(new Set(got.slice(0, 13).map((r) => r.ids.join(','))).size).toBe(13);
    });
  }

  it('SigLIP maps unknown characters to <unk> while SigLIP2 falls back to bytes', async () => {
    const siglip = await HfTokenizer.fromDir(dirs['siglip-tiny/hf']!, { contextLength: CONTEXT });
    const gemma = await HfTokenizer.fromDir(dirs['siglip2-tiny/hf']!, { contextLength: CONTEXT });
    expect(await siglip.tokens('🐶 dog')).toEqual(['▁', '<unk>', '▁dog', '</s>']);
    expect(await gemma.tokens('🐶 dog')).toEqual(['<0xF0>', '<0x9F>', '<0x90>', '<0xB6>', '▁dog', '<eos>']);
    // The Precompiled normaliser (SentencePiece's charsmap) folds full-width forms and ligatures.
    expect(await siglip.tokens('ｄｏｇ')).toEqual(await siglip.tokens('dog'));
  });

  it("open_clip's canonicalize: punctuation out, '_' to a space, lower-cased, whitespace collapsed", () => {
    expect(canonicalizeText('  A Photo_of a DOG!!  (in Paris) ')).toBe('a photo of a dog in paris');
    expect(canonicalizeText('¿Qué?  café\u3000「猫」')).toBe('¿qué café 「猫」');
  });

  it('a missing native binary is named for the platform', () => {
    expect(nativeBinaryName('linux', 'x64', false)).toBe('tokenizers.linux-x64-gnu.node');
    expect(nativeBinaryName('linux', 'arm64', true)).toBe('tokenizers.linux-arm64-musl.node');
    expect(nativeBinaryName('darwin', 'arm64', false)).toBe('tokenizers.darwin-arm64.node');
    expect(nativeBinaryName('win32', 'x64', false)).toBe('tokenizers.win32-x64-msvc.node');
  });
});

describe('both layouts load and encode, and agree with each other', () => {
  for (const preset of PRESETS) {
    it(`${preset}: the HF and the Immich export give the same embeddings; the model carries its calibration`, async () => {
      const hf = await ClipModel.load(await readModelDir(dirs[`${preset}/hf`]!), { providers: ['cpu'], threads: 1 });
      const oc = await ClipModel.load(await readModelDir(dirs[`${preset}/openclip`]!), { providers: ['cpu'], threads: 1 });
      try {
        expect(hf.spec.preprocess).toMatchObject({ resizeMode: 'squash', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
        expect(oc.spec.preprocess).toEqual(hf.spec.preprocess);
        expect(hf.scoreCalibration).toEqual({ logitScale: expect.closeTo(10, 9), logitBias: -10 });
        expect(oc.scoreCalibration).toEqual(hf.scoreCalibration);
        expect(hf.dim).toBe(48);
        // Texts the Immich config canonicalises; given already-clean text the HF side must agree exactly.
        const texts = ['a photo of a dog', 'cafe creme', '海の写真'];
        const [a, b] = [await hf.embedTexts(texts), await oc.embedTexts(texts)];
        texts.forEach((t, i) => expect(maxAbsDiff(a[i]!, b[i]!), t).toBeLessThan(1e-5));
        expect(maxAbsDiff(a[0]!, a[1]!)).toBeGreaterThan(1e-2);
        const probability = calibratedProbability(0.1, hf.scoreCalibration!);
        expect(probability).toBeCloseTo(1 / (1 + Math.exp(-(10 * 0.1 - 10))), 12);
      } finally {
        await Promise.all([hf.release(), oc.release()]);
      }
    });
  }

  it('gives no calibration to a folder without the trained scale and bias, as real exports are (init_logit_bias is not the trained value)', async () => {
    for (const layout of ['hf', 'openclip'] as const) {
      const copy = join(tmp, `uncalibrated-${layout}`);
      cpSync(dirs[`siglip2-tiny/${layout}`]!, copy, { recursive: true });
      const config = JSON.parse(readFileSync(join(copy, 'config.json'), 'utf8')) as Record<string, unknown>;
      delete config.logit_scale;
      delete config.logit_bias;
      if (layout === 'openclip') config.init_logit_bias = -10;
      writeFileSync(join(copy, 'config.json'), JSON.stringify(config));
      expect((await readModelDir(copy)).scoreCalibration, layout).toBeNull();
    }
  });
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function unit(v: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / norm);
}
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);

describe('transformers.js as the oracle (its SigLIP classes on the same HF folder)', () => {
  const options = { local_files_only: true } as const;
  const sessions = { ...options, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } } as const;
  beforeAll(() => {
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = `${tmp}/`;
  });

  for (const preset of PRESETS) {
    it(`${preset}: text embeddings equal SiglipTextModel's pooler_output (max |Δ| ≤ 1e-5)`, async () => {
      const name = `${preset}-hf`;
      const model = await ClipModel.load(await readModelDir(dirs[`${preset}/hf`]!), { providers: ['cpu'], threads: 1 });
      const textModel = await tf.SiglipTextModel.from_pretrained(name, sessions);
      try {
        const texts = SENTENCES.slice(0, 8);
        const ours = await model.embedTexts(texts);
        const ids = await (model.tokenizer as HfTokenizer).tokenize(texts, CONTEXT);
        const data = BigInt64Array.from(ids.flatMap((r) => r.ids), BigInt);
        const { pooler_output } = await textModel({ input_ids: new tf.Tensor('int64', data, [texts.length, CONTEXT]) });
        const dim = pooler_output.dims[1] as number;
        const flat = pooler_output.data as Float32Array;
        texts.forEach((t, i) => expect(maxAbsDiff(ours[i]!, unit(flat.subarray(i * dim, (i + 1) * dim))), t).toBeLessThanOrEqual(1e-5));
      } finally {
        await Promise.all([model.release(), textModel.dispose()]);
      }
    }, 60_000);
  }

  describe.skipIf(!photos)(`photos ${photos ? '' : NEEDS_SHARED}`, () => {
    /**
     * Measured (seed-7 tiny models, sharp 0.35, ORT 1.30), the larger of the two presets: mean |Δ| of the
     * normalised pixels (range 2.0) against SiglipImageProcessor's, and 1 − cosine of the embeddings against
     * SiglipVisionModel fed its own pixels. Both squash, but transformers.js resizes with sharp's affine
     * bicubic, which point-samples, and clipdex with libvips' antialiased reduce (PIL's behaviour; see
     * transformers-oracle.test.ts): the gap grows with the downscale (Dune 2560 px, fish1) and the random
     * 48-d towers amplify it. Bounds: twice the measured value.
     */
    const MEASURED: Record<string, { pixels: number; cos: number }> = {
      'skimage/astronaut.png': { pixels: 0.0426, cos: 3.4e-3 },
      'skimage/rocket.jpg': { pixels: 0.0318, cos: 5.1e-3 },
      'edge/Dune.jpg': { pixels: 0.0727, cos: 3.51e-2 },
      'edge/logo.png': { pixels: 0.0158, cos: 3.4e-4 },
      'labeled/fishes/fish1.webp': { pixels: 0.0763, cos: 2.67e-2 },
      'labeled/tools/hammer1.webp': { pixels: 0.0082, cos: 4e-5 },
    };
    const FILES = Object.keys(MEASURED);

    for (const preset of PRESETS) {
      it(`${preset}: preprocessing within the measured bound of SiglipImageProcessor, embeddings of SiglipVisionModel`, async () => {
        const dir = dirs[`${preset}/hf`]!;
        const spec = await readModelDir(dir);
        const paths = FILES.map((f) => join(photos!, f));
        expect(paths.filter((p) => !existsSync(p))).toEqual([]);
        const processor = await tf.AutoProcessor.from_pretrained(`${preset}-hf`, options);
        const visionModel = await tf.SiglipVisionModel.from_pretrained(`${preset}-hf`, sessions);
        const model = await ClipModel.load(spec, { providers: ['cpu'], threads: 1 });
        try {
          const ours = await preprocessBatch(paths, spec.preprocess, { concurrency: 1 });
          const wrong = await preprocessBatch(paths, { ...spec.preprocess, resizeMode: 'shortest' }, { concurrency: 1 });
          const plane = 3 * spec.preprocess.size ** 2;
          const embeddings = await model.embedImages(paths, { concurrency: 1 });
          for (let i = 0; i < paths.length; i++) {
            const { pixel_values } = await processor(await tf.RawImage.read(paths[i]!));
            expect(pixel_values.dims).toEqual([1, 3, spec.preprocess.size, spec.preprocess.size]);
            const theirs = pixel_values.data as Float32Array;
            const mine = ours.tensor.subarray(i * plane, (i + 1) * plane);
            let sum = 0;
            for (let k = 0; k < plane; k++) sum += Math.abs(mine[k]! - theirs[k]!);
            expect(sum / plane, FILES[i]).toBeLessThanOrEqual(2 * MEASURED[FILES[i]!]!.pixels);
            // A centre crop (CLIP's preprocessing) lands further from it wherever it changes the picture.
            let cropped = 0;
            let apart = 0;
            const crop = wrong.tensor.subarray(i * plane, (i + 1) * plane);
            for (let k = 0; k < plane; k++) {
              cropped += Math.abs(crop[k]! - theirs[k]!);
              apart += Math.abs(crop[k]! - mine[k]!);
            }
            if (apart / plane > 0.05) expect(cropped / plane, FILES[i]).toBeGreaterThan(sum / plane);
            const { pooler_output } = await visionModel({ pixel_values });
            const result = embeddings[i]!;
            if (!result.ok) throw result.error;
                const gap = 1 - cosine(result.embedding, unit(pooler_output.data as Float32Array));
            expect(gap, FILES[i]).toBeLessThanOrEqual(2 * MEASURED[FILES[i]!]!.cos);
          }
          // The same pixels give the same embedding: transformers.js fed clipdex's own tensor.
          const { pooler_output } = await visionModel({ pixel_values: new tf.Tensor('float32', ours.tensor.slice(0, plane), [1, 3, spec.preprocess.size, spec.preprocess.size]) });
          expect(maxAbsDiff(embeddings[0]!.ok ? embeddings[0]!.embedding : [], unit(pooler_output.data as Float32Array))).toBeLessThanOrEqual(1e-5);
        } finally {
          await Promise.all([model.release(), visionModel.dispose()]);
        }
      }, 120_000);
    }
  });
});

describe.skipIf(!photos)(`search end to end through a real library ${photos ? '' : NEEDS_SHARED}`, () => {
  let library: Library;
  const files = ['skimage/astronaut.png', 'skimage/coffee.png', 'edge/Dune.jpg', 'labeled/fishes/fish10.webp', 'labeled/renewable/dam2.webp'].map((f) =>
    join(photos ?? '', f),
  );
  beforeAll(async () => {
    library = await openLibrary(join(tmp, 'data'), dirs['siglip2-tiny/openclip']!);
    await indexFiles(library, photos!, files);
  }, 120_000);
  afterAll(async () => library?.close());

  it('a text query ranks the photos by the cosine of the SigLIP embeddings; each photo finds itself first', async () => {
    const engine = new QueryEngine(library);
    const { model } = library.requireModel();
    const response = await engine.search({ terms: [{ text: 'a photo of a fish' }] });
    expect(response.results).toHaveLength(files.length);
    const [query] = await model.embedTexts(['a photo of a fish']);
    const images = await model.embedImages(files);
    const expected = files.map((f, i) => ({ f, s: cosine(query!, images[i]!.ok ? images[i]!.embedding : []) })).sort((a, b) => b.s - a.s);
    expect(response.results.map((r) => r.path)).toEqual(expected.map((e) => e.f));
    response.results.forEach((r, i) => expect(r.score).toBeCloseTo(expected[i]!.s, 4));
    // The calibration the engine reads for an absolute cut-off.
    expect(model.scoreCalibration).not.toBeNull();
    for (const r of response.results) {
      const p = calibratedProbability(r.score, model.scoreCalibration!);
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(1);
    }
    for (const [i, file] of files.entries()) {
      const similar = await model.embedImages([file]);
      const hits = await library.requireModel().index.search(similar[0]!.ok ? similar[0]!.embedding : new Float32Array(48), 1);
      expect(library.images.get(hits[0]!.id)?.path, file).toBe(files[i]);
    }
  }, 120_000);
});
