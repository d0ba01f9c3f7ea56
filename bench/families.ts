/**
 * npm run bench:families — encode speed of each model family at its real shapes, beside ViT-B/32 (issue 13).
 *
 *   images/s: random input tensors (decode excluded: it is the same for every model), batch 8
 *   texts/s:  the phrase list below, each model through its own tokenizer and text encoder, batch 8
 *
 * Models: the presets `models build-tiny` writes at real shapes with seeded random weights (speed depends on
 * shapes alone): vit-b-32, siglip-b-16, siglip2-b-16-256, xlmr-clip-large-b-16plus, nllb-siglip-b-16-384, each
 * in the layout its real export has (transformers.js: dynamic batch; Immich's: batch 1, text padded to the
 * context). They are loaded with the product's code (readModelDir → openTower → ImageEncoder / TextEncoder with
 * the model's own tokenizer), on 2 intra-op threads like bench:encode.
 *
 * One tower of every model is open at a time (images, then texts), and each round runs every model once in
 * turn, so a busy machine slows all of them alike; the figures are medians over the rounds, the ratios medians
 * of the per-round ratios to ViT-B/32.
 *
 * Options (env): BENCH_ROUNDS (default 5); BENCH_QUICK=1 for 2 rounds; BENCH_FAMILIES_DIR for the model cache
 * (default: clipdex-bench-families under the OS temp folder; a model already there is reused, delete its
 * folder to rebuild it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Crossmodal3600 } from '../src/model/manifest.js';
import { ImageEncoder } from '../src/model/image-encoder.js';
import { readModelDir, type ModelSpec } from '../src/model/model-dir.js';
import { findManifest } from '../src/model/model-registry.js';
import { TextEncoder } from '../src/model/text-encoder.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { type AnyPresetName, buildTinyModel } from '../src/model/tiny-model-builder.js';
import { openTower } from '../src/model/tower-session.js';

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 2 : 5));
const CACHE = resolve(process.env.BENCH_FAMILIES_DIR ?? join(tmpdir(), 'clipdex-bench-families'));
const OUT = resolve('bench/out');
const BATCH = 8;
const SESSION = { providers: ['cpu' as const], threads: 2 };
const sharedVocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');

interface Family {
  preset: AnyPresetName;
  name: string;
  /** The real model these shapes are, and what runs it. */
  real: string;
  /** Manifests whose published Crossmodal-3600 recall goes beside the row (Immich's figures, not ours). */
  recallFrom: string[];
}

const FAMILIES: Family[] = [
  { preset: 'vit-b-32', name: 'CLIP ViT-B/32', real: 'openai/clip-vit-base-patch32', recallFrom: ['clip-vit-b-32'] },
  { preset: 'siglip-b-16', name: 'SigLIP B/16-224', real: 'google/siglip-base-patch16-224', recallFrom: ['siglip-base-patch16-224', 'immich-vit-b-16-siglip2-webli'] },
  { preset: 'siglip2-b-16-256', name: 'SigLIP2 B/16-256', real: 'google/siglip2-base-patch16-256', recallFrom: [] },
  {
    preset: 'xlmr-clip-large-b-16plus',
    name: 'M-CLIP XLM-R Large + B/16+-240',
    real: 'M-CLIP/XLM-Roberta-Large-Vit-B-16Plus',
    recallFrom: ['immich-xlm-roberta-large-vit-b-16plus'],
  },
  { preset: 'nllb-siglip-b-16-384', name: 'NLLB-SigLIP base (B/16-384)', real: 'visheratin/nllb-clip-base-siglip', recallFrom: ['immich-nllb-clip-base-siglip-v1', 'immich-nllb-clip-base-siglip-mrl'] },
];

/** The same list as bench:encode: short queries and long ones, so real-length text towers show their advantage. */
const PHRASES = [
  'a dog',
  'dog asleep on the sofa',
  'kids on a beach at sunset',
  'grandma in her garden with the roses',
  'a red kayak on a lake surrounded by pine trees in autumn',
  'receipt',
  'the whiteboard from the planning meeting with the roadmap drawn on it',
  'snow',
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Builds a preset into the cache unless a complete build of it is there (builds are renamed into place whole). */
async function ensureBuilt(f: Family): Promise<string> {
  const dir = join(CACHE, f.preset);
  const config = join(dir, 'config.json');
  if (existsSync(config)) {
    const built = (JSON.parse(readFileSync(config, 'utf8')) as { clipdex?: { preset?: string } }).clipdex?.preset;
    if (built === f.preset) return dir;
  }
  console.log(`building ${f.preset} into ${dir} …`);
  const t = performance.now();
  const vocab = f.preset === 'vit-b-32' && existsSync(sharedVocab) ? sharedVocab : undefined;
  await buildTinyModel({ out: dir, preset: f.preset, vocab, force: true });
  console.log(`  built in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  return dir;
}

interface Measured {
  rates: number[][];
  load: [number, number];
}

/**
 * Rounds alternating between the models: `run(k)` does one unit of work for model k and returns how many
 * items it did. One unwarmed run first, since the first run plans and allocates.
 */
async function alternate(count: number, run: (k: number) => Promise<number>): Promise<Measured> {
  for (let k = 0; k < count; k++) await run(k);
  const before = loadavg()[0]!;
  const rates = Array.from({ length: count }, () => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < count; k++) {
      const t = performance.now();
      const n = await run(k);
      rates[k]!.push(n / ((performance.now() - t) / 1000));
    }
    console.log(`  round ${r + 1}/${ROUNDS}: ${rates.map((xs) => xs.at(-1)!.toFixed(2)).join(' · ')}`);
  }
  return { rates, load: [before, loadavg()[0]!] };
}

async function benchImages(specs: ModelSpec[]): Promise<Measured> {
  const models = await Promise.all(
    specs.map(async (spec) => {
      const tower = await openTower(join(spec.dir, spec.vision.file), spec.vision, 'image', SESSION);
      const S = spec.preprocess.size;
      return { tower, encoder: new ImageEncoder(tower, S, BATCH), pixels: new Float32Array(BATCH * 3 * S * S).map(() => Math.random() * 2 - 1) };
    }),
  );
  console.log('images (batch 8, decode excluded):');
  const measured = await alternate(models.length, async (k) => {
    const m = models[k]!;
    await m.encoder.encode(m.pixels, BATCH);
    return BATCH;
  });
  for (const m of models) await m.tower.session.release();
  return measured;
}

async function benchTexts(specs: ModelSpec[]): Promise<Measured> {
  const models = await Promise.all(
    specs.map(async (spec) => {
      const tower = await openTower(join(spec.dir, spec.text.file), spec.text, 'text', SESSION);
      return { tower, encoder: new TextEncoder(tower, await loadTextTokenizer(spec), spec.contextLength, BATCH) };
    }),
  );
  console.log('texts (the 8 phrases, batch 8):');
  const measured = await alternate(models.length, async (k) => {
    // As a search does: no language given, so NLLB-CLIP's tokenizer detects each phrase's.
    const out = await models[k]!.encoder.encode(PHRASES);
    return out.length;
  });
  for (const m of models) await m.tower.session.release();
  return measured;
}

function recallText(c: Crossmodal3600 | undefined, id: string): string | null {
  if (!c) return null;
  const en = c.recall.English;
  const de = c.recall.German;
  return `${id}: ${en ?? '—'} EN${de === undefined ? '' : ` / ${de} DE`}`;
}

async function main(): Promise<void> {
  mkdirSync(CACHE, { recursive: true });
  mkdirSync(OUT, { recursive: true });
  const dirs: string[] = [];
  for (const f of FAMILIES) dirs.push(await ensureBuilt(f));
  const specs = await Promise.all(dirs.map((d) => readModelDir(d)));
  const images = await benchImages(specs);
  const texts = await benchTexts(specs);
  const ratio = (m: Measured, k: number) => median(m.rates[0]!.map((base, r) => base / m.rates[k]![r]!));

  const rows: Record<string, string | number>[] = [];
  for (const [k, f] of FAMILIES.entries()) {
    const spec = specs[k]!;
    const recall: string[] = [];
    for (const id of f.recallFrom) {
      const text = recallText((await findManifest(id))?.crossmodal3600, id);
      if (text) recall.push(text);
    }
    rows.push({
      model: `${f.name} (\`${f.preset}\`)`,
      'input px': spec.preprocess.size,
      'text tokens': spec.layout === 'hf' && spec.family === 'clip' ? 'real length' : `${spec.contextLength} (padded)`,
      layout: spec.layout === 'hf' ? 'transformers.js, dynamic batch' : "Immich's, batch 1",
      'images/s': +median(images.rates[k]!).toFixed(2),
      '× ViT-B/32 per image': +ratio(images, k).toFixed(1),
      'texts/s': +median(texts.rates[k]!).toFixed(2),
      '× ViT-B/32 per text': +ratio(texts, k).toFixed(1),
      'Crossmodal-3600 recall (Immich, published)': recall.length > 0 ? recall.join('; ') : 'none published',
    });
  }
  const cols = Object.keys(rows[0]!);
  const table = [`| ${cols.join(' | ')} |`, `|${cols.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${cols.map((c) => r[c]).join(' | ')} |`)].join('\n');
  const load = `load average (1 min, before → after): images ${images.load.map((l) => l.toFixed(1)).join(' → ')}, texts ${texts.load.map((l) => l.toFixed(1)).join(' → ')}`;
  console.log(`\n${table}\n\n${ROUNDS} rounds; ${load}`);
  const file = join(OUT, 'families.json');
  const models = FAMILIES.map((f) => ({ preset: f.preset, shapesOf: f.real }));
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, models, rows, images, texts }, null, 2)}\n`);
  console.log(`written ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
