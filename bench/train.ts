/**
 * npm run bench:train — the trainer's cost at the sizes users reach:
 *
 *   training: 1k and 10k labeled pairs of 512-d embeddings (ViT-B/32's dimension), two shapes each —
 *     "captions": every photo its own caption; "folders": 20 photos per caption (folder-as-label) —
 *     full runs with the defaults (early stopping, blend search, evaluation);
 *   activation: re-project 100k stored embeddings through an adapter and build their index, against a
 *     plain rebuild of the base index in the same run (goal: ≤ build time + 10%);
 *   quality (when ../shared is there): the four labeled folders with the self-built tiny model.
 *
 *   text blocks (issue 17): tuning the last k ∈ {1, 2, 4, 12} blocks of a ViT-B/32-shaped text tower (width
 *     512, 8 heads, 12 layers, vocab 49408, context 77: the vit-b-32 preset with CLIP's vocabulary, random
 *     weights) on 1k pairs with 10 and with 100 distinct captions, full weights and LoRA rank 8; each row in
 *     its own process (peak RSS is the row's), BENCH_TEXT_EPOCHS epochs (default 10) with early stopping off,
 *     and where the time goes; then the residual cache at each caption's length against padded to 77.
 *
 *   image blocks (issue 17): tuning the last k ∈ {1, 2} blocks of the same preset's ViT-B/32 image tower
 *     (random weights) on BENCH_IMAGE_PHOTOS photos (default 64, synthetic 224×224 pixel tensors: decoding is
 *     not the point) × 8 captions, full weights and LoRA rank 8, BENCH_IMAGE_EPOCHS epochs (default 3); per
 *     photo: the activation cache (the frozen blocks' forward pass), a training step's share, the bytes
 *     cached; each row in its own process.
 *
 * The 100k library is bench/out/query-100000 (made by bench:query; made here if missing) copied to a
 * scratch folder, so the query benchmark's library is never changed. BENCH_N overrides 100k; BENCH_ONLY=
 * training|activation|labeled|text-blocks|image-blocks runs one part; BENCH_TEXT_ROWS=k:captions:lora,… picks
 * text rows.
 */
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Library } from '../src/library/library.js';
import { AdapterService } from '../src/train/adapter-service.js';
import { encodeAdapter } from '../src/adapter/adapter-weights.js';
import { folderLabelRows, importLabels } from '../src/train/label-import.js';
import { trainAdapters, type TrainingData } from '../src/train/trainer.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { cacheResiduals } from '../src/train/text-tower/residual-cache.js';
import { readTextTower, residualEntering } from '../src/train/text-tower/tower-source.js';
import { type TextBlockPair, tuneTextBlocks } from '../src/train/text-tower/tune-text-blocks.js';
import { type ImageBlockPair, tuneImageBlocks } from '../src/train/image-tower/tune-image-blocks.js';
import { indexFiles, tinyModel } from '../test/helpers/library-fixture.js';
import { gaussian } from '../test/helpers/store-fixtures.js';

const OUT = resolve('bench/out');
const N = Number(process.env.BENCH_N ?? 100_000);
const D = 512;

function normalizeRows(v: Float32Array, d: number): Float32Array {
  for (let r = 0; r < v.length / d; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += v[r * d + k]! ** 2;
    s = Math.sqrt(s) || 1;
    for (let k = 0; k < d; k++) v[r * d + k]! /= s;
  }
  return v;
}

/**
 * Labeled photos as CLIP-like data: each caption has a hidden centre; its photos are the centre plus noise
 * (photos of one label look alike), its text embedding a hidden linear map of the centre plus noise (the
 * text tower does not speak the photos' language until trained).
 */
function pairsData(pairs: number, perCaption: number, seed: number): TrainingData {
  const g = gaussian(seededRandom(seed));
  const captions = Math.ceil(pairs / perCaption);
  const map = Float32Array.from({ length: D * D }, () => g() / Math.sqrt(D));
  const centres = normalizeRows(Float32Array.from({ length: captions * D }, () => g()), D);
  const images = new Float32Array(pairs * D);
  for (let i = 0; i < pairs; i++) {
    const c = Math.floor(i / perCaption);
    for (let k = 0; k < D; k++) images[i * D + k] = centres[c * D + k]! + 0.7 * g() / Math.sqrt(D) * 3;
  }
  normalizeRows(images, D);
  const texts = new Float32Array(captions * D);
  for (let c = 0; c < captions; c++) {
    for (let j = 0; j < D; j++) {
      let s = 0;
      for (let k = 0; k < D; k++) s += centres[c * D + k]! * map[k * D + j]!;
      texts[c * D + j] = s + 0.5 * g() / Math.sqrt(D);
    }
  }
  normalizeRows(texts, D);
  return {
    dim: D,
    images,
    texts,
    pairs: Array.from({ length: pairs }, (_, i) => [i, Math.floor(i / perCaption)] as const),
    // Every caption has photos on both sides (the folders shape), like the stratified split.
    imageSplit: Array.from({ length: pairs }, (_, i) => (i % 5 === 2 ? 'val' : 'train')),
    logitScale: 100,
  };
}

async function trainingRuns() {
  const rows = [];
  for (const size of [1000, 10_000]) {
    for (const [shape, per] of [
      ['captions', 1],
      ['folders', 20],
    ] as const) {
      const data = pairsData(size, per, 7);
      const t = performance.now();
      const out = await trainAdapters(data, { seed: 1 });
      const ms = performance.now() - t;
      const steps = out.history.length * Math.ceil((size * 0.8) / 256);
      rows.push({ pairs: size, shape, seconds: +(ms / 1000).toFixed(2), epochs: out.history.length, bestEpoch: out.bestEpoch, stepsPerSecond: +(steps / (ms / 1000)).toFixed(1), meanRecallBefore: out.blends[0]?.meanRecall, meanRecallAfter: out.blends.find((b) => b.blend === out.blend)?.meanRecall, blend: out.blend });
      console.log(JSON.stringify(rows[rows.length - 1]));
    }
  }
  return rows;
}

async function activationRun() {
  const source = join(OUT, `query-${N}`);
  // bench:query's setup makes (or checks, and if need be remakes) the library.
  const r = spawnSync(process.execPath, ['--import', 'tsx', resolve('bench/query.ts')], { env: { ...process.env, BENCH_N: String(N), BENCH_SETUP_ONLY: '1' }, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`could not make the ${N}-photo library`);
  const scratch = join(OUT, `train-${N}`);
  rmSync(scratch, { recursive: true, force: true });
  cpSync(source, scratch, { recursive: true });
  const library = await Library.open({ dataDir: scratch, model: join(OUT, 'vit-b-32') });
  try {
    const { index, model, key } = library.requireModel();
    if (index.health().count !== N) throw new Error(`the library holds ${index.health().count} searchable photos, ${N} expected`);
    // A plain rebuild of the base index: the yardstick.
    let t = performance.now();
    await index.rebuild();
    const buildMs = performance.now() - t;
    // An adapter near identity, as training leaves them.
    const rand = seededRandom(5);
    const g = gaussian(rand);
    const w = () => Float32Array.from({ length: model.dim * model.dim }, (_, i) => (i % (model.dim + 1) === 0 ? 1 : 0) + 0.02 * g());
    library.adapters.add(key, encodeAdapter({ dim: model.dim, image: w(), text: w() }), { bench: true });
    const version = library.adapters.list(key).at(-1)!.version;
    const phases: Record<string, number> = {};
    let phase = '';
    let phaseStart = performance.now();
    t = performance.now();
    const result = await new AdapterService(library).activate(version, (p) => {
      if (p.phase !== phase) {
        if (phase) phases[phase] = +((performance.now() - phaseStart) / 1000).toFixed(2);
        phase = p.phase;
        phaseStart = performance.now();
      }
    });
    phases[phase] = +((performance.now() - phaseStart) / 1000).toFixed(2);
    const activateMs = performance.now() - t;
    const health = library.searchSpace().index.health();
    if (health.count !== N) throw new Error(`the adapter's index holds ${health.count} photos, ${N} expected`);
    const row = { photos: N, baseRebuildSeconds: +(buildMs / 1000).toFixed(1), activateSeconds: +(activateMs / 1000).toFixed(1), ratio: +(activateMs / buildMs).toFixed(3), projected: result.projected, phases, adapterIndex: { engine: health.engine, count: health.count, ef: health.ef, recall: health.recall } };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await library.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function labeledRun() {
  const labeled = resolve('..', 'shared', 'photos', 'labeled');
  if (!existsSync(labeled)) return { skipped: '../shared/photos/labeled not found' };
  const dir = join(OUT, 'train-labeled');
  rmSync(dir, { recursive: true, force: true });
  const library = await Library.open({ dataDir: join(dir, 'data'), model: await tinyModel(dir), cacheDir: join(dir, 'cache') });
  try {
    for (const folder of readdirSync(labeled).filter((f) => !f.includes('.')).sort()) {
      const files = readdirSync(join(labeled, folder)).filter((f) => f.endsWith('.webp')).sort().map((f) => join(labeled, folder, f));
      await indexFiles(library, labeled, files);
    }
    importLabels(library, folderLabelRows(library, labeled));
    const { outcome } = await new AdapterService(library).train({ seed: 3 });
    const row = { valPhotos: outcome.valImages, before: outcome.before, after: outcome.after, blend: outcome.blend, retention: outcome.retention, bestEpoch: outcome.bestEpoch, ms: outcome.durationMs };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await library.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const TEXT_MODEL = join(OUT, 'vit-b-32');
const TEXT_EPOCHS = Number(process.env.BENCH_TEXT_EPOCHS ?? 10);
const ADJECTIVES = ['red', 'old', 'small', 'happy', 'wet', 'golden', 'sleepy', 'wooden', 'bright', 'tiny'];
const NOUNS = ['dog', 'bicycle', 'lighthouse', 'grandmother', 'sailboat', 'cake', 'mountain', 'kitten', 'market', 'bridge'];
const PLACES = ['on the beach', 'in the snow', 'at night', 'near the old harbour in the rain', 'at a birthday party', 'in the garden', 'on a mountain trail', 'in the kitchen', 'under a bridge', 'at the station'];

/** `count` distinct captions of everyday length (7–16 CLIP tokens). */
function benchCaptions(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `a photo of a ${ADJECTIVES[i % 10]} ${NOUNS[Math.floor(i / 10) % 10]} ${PLACES[(i * 7 + Math.floor(i / 10)) % 10]}`);
}

async function ensureTextModel(): Promise<void> {
  if (existsSync(join(TEXT_MODEL, 'onnx', 'text_model.onnx'))) return;
  const vocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');
  console.log(`building the vit-b-32 preset into ${TEXT_MODEL} …`);
  await buildTinyModel({ out: TEXT_MODEL, preset: 'vit-b-32', vocab: existsSync(vocab) ? vocab : undefined, force: true });
}

/** One row, in this process: 1k pairs over `captions` captions, photos around each caption's centre. */
async function textBlockRow(k: number, captions: number, lora: number | null) {
  const E = 512;
  const g = gaussian(seededRandom(11));
  const centres = normalizeRows(Float32Array.from({ length: captions * E }, () => g()), E);
  const images = new Float32Array(1000 * E);
  for (let i = 0; i < 1000; i++) for (let d = 0; d < E; d++) images[i * E + d] = centres[(i % captions) * E + d]! + (0.5 * g()) / Math.sqrt(E);
  const pairs: TextBlockPair[] = Array.from({ length: 1000 }, (_, i) => ({ caption: i % captions, image: i, split: i % 5 === 2 ? 'val' : 'train' }));
  const t = performance.now();
  const out = await tuneTextBlocks({ modelDir: TEXT_MODEL, captions: benchCaptions(captions), imageEmbeddings: images, pairs, k, lora, epochs: TEXT_EPOCHS, patience: TEXT_EPOCHS, seed: 1 });
  const seconds = performance.now() - t;
  const s = (ms: number) => +(ms / 1000).toFixed(2);
  const tm = out.timings;
  // Saving a version: the tuned tensors merged into the tower's graph and written (temporary file + rename).
  const w = performance.now();
  const towerFile = join(OUT, `text-blocks-${process.pid}.onnx`);
  await out.writeTower(towerFile);
  const writeSeconds = s(performance.now() - w);
  rmSync(towerFile, { force: true });
  return {
    k,
    captions,
    lora,
    seconds: s(seconds),
    epochs: out.history.length,
    parameters: out.parameters,
    perStepSeconds: s(tm.stepsMs / tm.steps),
    where: { readTower: s(tm.readMs), residualCache: s(tm.cacheMs), headCheck: s(tm.checkMs), graphAndSessions: s(tm.setupMs), steps: s(tm.stepsMs), validation: s(tm.validationMs), mergeIntoTower: s(tm.finishMs) },
    mergeAndWriteTowerSeconds: writeSeconds,
    valLoss: [+out.history[0]!.valLoss!.toFixed(3), +out.valLoss!.toFixed(3)],
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

async function textBlockRuns() {
  await ensureTextModel();
  const wanted = process.env.BENCH_TEXT_ROWS?.split(',').map((r) => r.split(':'));
  const rows = wanted ?? [10, 100].flatMap((c) => [1, 2, 4, 12].flatMap((k) => [[k, c, 0], [k, c, 8]].map((r) => r.map(String))));
  const results = [];
  for (const [k, c, lora] of rows) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', resolve('bench/train.ts')], { env: { ...process.env, BENCH_TEXT_ROW: JSON.stringify([Number(k), Number(c), Number(lora) || null]) }, encoding: 'utf8', maxBuffer: 1 << 26 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('ROW '));
    if (r.status !== 0 || !line) throw new Error(`text-block row ${k}:${c}:${lora} failed: ${r.stderr.slice(-2000)}`);
    results.push(JSON.parse(line.slice(4)));
    console.log(line.slice(4));
  }
  // The cache alone, 100 captions entering block 10: each caption at its length against all padded to 77.
  const tower = await readTextTower(TEXT_MODEL);
  const tokenizer = await loadTextTokenizer(tower.spec);
  const ids = (await tokenizer.tokenize(benchCaptions(100), 77)).map((t) => t.ids);
  const cache = {} as Record<string, { seconds: number; positions: number }>;
  for (const padToContext of [false, true, false]) {
    const c = await cacheResiduals(tower, 10, ids, residualEntering(tower, 10), { padId: tokenizer.padId, padToContext });
    cache[padToContext ? 'padded77' : 'ownLength'] = { seconds: +(c.ms / 1000).toFixed(2), positions: c.positionsRun };
  }
  const tokens = ids.map((r) => r.length);
  const cacheRow = { captions: 100, tokens: { min: Math.min(...tokens), max: Math.max(...tokens), mean: +(tokens.reduce((a, b) => a + b, 0) / 100).toFixed(1) }, ...cache };
  console.log(JSON.stringify(cacheRow));
  return { rows: results, cache: cacheRow };
}

const IMAGE_PHOTOS = Number(process.env.BENCH_IMAGE_PHOTOS ?? 64);
const IMAGE_EPOCHS = Number(process.env.BENCH_IMAGE_EPOCHS ?? 3);

/** One image row, in this process: IMAGE_PHOTOS photos over 8 captions, fixed caption embeddings. */
async function imageBlockRow(k: number, lora: number | null) {
  const E = 512;
  const g = gaussian(seededRandom(5));
  const photos = Array.from({ length: IMAGE_PHOTOS }, () => Float32Array.from({ length: 3 * 224 * 224 }, () => g()));
  const texts = normalizeRows(Float32Array.from({ length: 8 * E }, () => g()), E);
  const pairs: ImageBlockPair[] = photos.map((_, i) => ({ image: i, caption: i % 8, split: i % 5 === 2 ? 'val' : 'train' }));
  const t = performance.now();
  const out = await tuneImageBlocks({ modelDir: TEXT_MODEL, photos, textEmbeddings: texts, pairs, k, lora, epochs: IMAGE_EPOCHS, patience: IMAGE_EPOCHS, seed: 1 });
  const seconds = performance.now() - t;
  const tm = out.timings;
  const trainPhotos = pairs.filter((p) => p.split === 'train').length;
  const ms = (v: number) => Math.round(v);
  return {
    k,
    lora,
    photos: IMAGE_PHOTOS,
    seconds: +(seconds / 1000).toFixed(2),
    epochs: out.history.length,
    parameters: out.parameters,
    cacheMsPerPhoto: ms(tm.cacheMs / IMAGE_PHOTOS),
    stepMsPerTrainingPhoto: ms(tm.stepsMs / (out.history.length * trainPhotos)),
    cacheKiBPerPhoto: Math.round(out.cacheBytes / IMAGE_PHOTOS / 1024),
    where: { readTower: ms(tm.readMs), cache: ms(tm.cacheMs), headCheck: ms(tm.checkMs), setup: ms(tm.setupMs), steps: ms(tm.stepsMs), validation: ms(tm.validationMs), finish: ms(tm.finishMs) },
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

async function imageBlockRuns() {
  await ensureTextModel();
  const results = [];
  for (const [k, lora] of [[1, 0], [2, 0], [2, 8]] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', resolve('bench/train.ts')], { env: { ...process.env, BENCH_IMAGE_ROW: JSON.stringify([k, lora || null]) }, encoding: 'utf8', maxBuffer: 1 << 26 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('ROW '));
    if (r.status !== 0 || !line) throw new Error(`image-block row ${k}:${lora} failed: ${r.stderr.slice(-2000)}`);
    results.push(JSON.parse(line.slice(4)));
    console.log(line.slice(4));
  }
  return { rows: results };
}

if (process.env.BENCH_IMAGE_ROW) {
  const [k, lora] = JSON.parse(process.env.BENCH_IMAGE_ROW) as [number, number | null];
  console.log(`ROW ${JSON.stringify(await imageBlockRow(k, lora))}`);
  process.exit(0);
}

if (process.env.BENCH_TEXT_ROW) {
  const [k, captions, lora] = JSON.parse(process.env.BENCH_TEXT_ROW) as [number, number, number | null];
  console.log(`ROW ${JSON.stringify(await textBlockRow(k, captions, lora))}`);
  process.exit(0);
}

// BENCH_ONLY=training|activation|labeled|text-blocks|image-blocks runs one part.
const only = process.env.BENCH_ONLY;
const results = {
  textBlocks: !only || only === 'text-blocks' ? await textBlockRuns() : null,
  imageBlocks: !only || only === 'image-blocks' ? await imageBlockRuns() : null,
  training: !only || only === 'training' ? await trainingRuns() : null,
  activation: !only || only === 'activation' ? await activationRun() : null,
  labeled: !only || only === 'labeled' ? await labeledRun() : null,
};
const { writeFileSync } = await import('node:fs');
const file = join(OUT, only === 'text-blocks' ? 'train-text-blocks.json' : only === 'image-blocks' ? 'train-image-blocks.json' : 'train.json');
writeFileSync(file, JSON.stringify(results, null, 2));
console.log(`results: ${file}`);
