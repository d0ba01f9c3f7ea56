/**
 * npm run bench:quantize — int8 towers (issue 19) beside fp32, in one run, on the ViT-B/32-shaped self-built model.
 *
 *   speed: image encode (batch 8, random tensors, decode excluded) and text encode (one query phrase at a time, real
 *   token length, as a search does), 2 threads, rounds alternating between fp32 and every int8 formulation so machine
 *   load hits all alike; medians, and each formulation's ratio to fp32
 *   agreement with fp32: mean and minimum cosine of image embeddings (the shared photos) and text embeddings (100
 *   phrases), and top-10 overlap of text → image rankings
 *
 * The self-built model has seeded random weights: its embeddings are less structured than a trained model's, so
 * its agreement figures are a stress test, not ImageNet numbers. With CLIPDEX_REAL_MODEL_DIR set (a real model folder,
 * fp32), the agreement is measured on that model too.
 *
 * Options (env): BENCH_QUICK=1 short run; BENCH_ROUNDS=n rounds (default 7, quick 2); BENCH_MODEL_DIR a built vit-b-32
 * folder; BENCH_SKIP_AGREEMENT=1 speed only; BENCH_FORMATS=a,b the formulations, `<format>:unfused` for one written without fusing the linear layers that
 * share an input (Q, K, V; quantize-graph.ts `fuseSharedInput`); BENCH_THREADS (default 2).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { meanCosine, minCosine, topKOverlap } from '../src/model/embedding-agreement.js';
import { ImageEncoder } from '../src/model/image-encoder.js';
import { preprocessBatch } from '../src/model/image-preprocess.js';
import { readModelDir, type ModelSpec } from '../src/model/model-dir.js';
import { QUANT_FORMATS, type QuantFormat } from '../src/model/quantize-graph.js';
import { quantizeModel } from '../src/model/quantize-model.js';
import { TextEncoder } from '../src/model/text-encoder.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { openTower } from '../src/model/tower-session.js';
import { AGREEMENT_PHRASES } from '../test/helpers/phrases.js';

const QUICK = process.env.BENCH_QUICK === '1';
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const OUT = resolve('bench/out');
const MODEL_DIR = resolve(process.env.BENCH_MODEL_DIR ?? join(OUT, 'vit-b-32'));
/** A formulation as written by `models quantize`, or (`:unfused`) without fusing Q, K, V. */
interface Variant {
  name: string;
  format: QuantFormat;
  fuse: boolean;
}
const VARIANTS: Variant[] = (process.env.BENCH_FORMATS?.split(',') ?? [...QUANT_FORMATS, 'dynamic-quantize-matmul:unfused', 'matmul-integer:unfused']).map((v) => {
  const [format, suffix] = v.split(':') as [QuantFormat, string?];
  if (!QUANT_FORMATS.includes(format) || (suffix !== undefined && suffix !== 'unfused')) throw new Error(`BENCH_FORMATS: unknown ${v}`);
  return { name: suffix ? `${format} (unfused)` : format, format, fuse: !suffix };
});
const PHOTOS = resolve('..', 'shared', 'photos');
const sharedVocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');
const BATCH = 8;

const results: Record<string, Record<string, string | number>[]> = {};
function record(table: string, row: Record<string, string | number>): void {
  (results[table] ??= []).push(row);
  console.log(`${table}: ${JSON.stringify(row)}`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function ensureModel(): Promise<void> {
  if (existsSync(join(MODEL_DIR, 'onnx', 'vision_model.onnx')) && existsSync(join(MODEL_DIR, 'tokenizer_config.json'))) return;
  console.log(`building the vit-b-32 preset into ${MODEL_DIR} …`);
  await buildTinyModel({ out: MODEL_DIR, preset: 'vit-b-32', vocab: existsSync(sharedVocab) ? sharedVocab : undefined, force: true });
}

/** An int8 copy per variant, written once and reused while its marker says the same formulation and fusing. */
async function ensureInt8(source: string, variant: Variant, dir: string): Promise<void> {
  const { format, fuse } = variant;
  const marker = join(dir, 'clipdex-quantization.json');
  if (existsSync(marker)) {
    const m = JSON.parse(readFileSync(marker, 'utf8')) as { formulation?: string; fusedSharedInput?: number };
    if (m.formulation === format && typeof m.fusedSharedInput === 'number' && (fuse || m.fusedSharedInput === 0)) return;
  }
  const t = performance.now();
  const q = await quantizeModel(await readModelDir(source), { out: dir, format, fuseSharedInput: fuse, sourceKey: 'bench', sourceRef: source, force: true });
  const mb = (n: number) => (n / 2 ** 20).toFixed(0);
  console.log(
    `${variant.name}: ${q.towers.map((w) => `${w.tower} ${w.weights} weights (${w.fused} fused groups) ${mb(w.bytesBefore)} → ${mb(w.bytesAfter)} MB`).join('; ')} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}

interface Loaded {
  name: string;
  spec: ModelSpec;
  image: ImageEncoder;
  text: TextEncoder;
  release(): Promise<void>;
}

async function load(name: string, dir: string): Promise<Loaded> {
  const spec = await readModelDir(dir);
  const session = { providers: ['cpu' as const], threads: THREADS };
  const [vision, text] = await Promise.all([
    openTower(join(spec.dir, spec.vision.file), spec.vision, 'image', session),
    openTower(join(spec.dir, spec.text.file), spec.text, 'text', session),
  ]);
  return {
    name,
    spec,
    image: new ImageEncoder(vision, spec.preprocess.size, BATCH),
    text: new TextEncoder(text, await loadTextTokenizer(spec), spec.contextLength, 32),
    release: async () => {
      await Promise.all([vision.session.release(), text.session.release()]);
    },
  };
}

function photoFiles(): string[] {
  if (!existsSync(PHOTOS)) return [];
  const files: string[] = [];
  for (const sub of ['labeled/fishes', 'labeled/tools', 'labeled/renewable', 'labeled/others', 'skimage']) {
    const d = join(PHOTOS, sub);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).sort()) if (/\.(webp|png|jpe?g)$/i.test(f)) files.push(join(d, f));
  }
  return files;
}

async function speed(models: Loaded[]): Promise<void> {
  const S = models[0]!.spec.preprocess.size;
  const pixels = new Float32Array(BATCH * 3 * S * S).map(() => Math.random() * 2 - 1);
  const images = models.map(() => [] as number[]);
  const texts = models.map(() => [] as number[]);
  // Work, beside speed: inputs per second of this process's CPU time (user + system, every thread). Other processes'
  // load stretches wall time but barely the CPU time a run needs; with more than one thread it counts ORT's spinning
  // workers too, so it is a clean measure at BENCH_THREADS=1.
  const imageCpu = models.map(() => [] as number[]);
  const textCpu = models.map(() => [] as number[]);
  let p = 0;
  const rounds = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 2 : 7));
  for (let r = -1; r < rounds; r++) {
    for (const [k, m] of models.entries()) {
      let t = performance.now();
      let c = process.cpuUsage();
      await m.image.encode(pixels, BATCH);
      const ips = BATCH / ((performance.now() - t) / 1000);
      const imageCpuS = cpuSeconds(process.cpuUsage(c));
      const n = 16;
      t = performance.now();
      c = process.cpuUsage();
      for (let i = 0; i < n; i++) await m.text.encode([AGREEMENT_PHRASES[p++ % AGREEMENT_PHRASES.length]!]);
      const tps = n / ((performance.now() - t) / 1000);
      const textCpuS = cpuSeconds(process.cpuUsage(c));
      if (r >= 0) {
        // Round -1 is the warm-up: first runs allocate and plan.
        images[k]!.push(ips);
        texts[k]!.push(tps);
        imageCpu[k]!.push(BATCH / imageCpuS);
        textCpu[k]!.push(n / textCpuS);
      }
    }
  }
  const base = { image: median(images[0]!), text: median(texts[0]!), imageCpu: median(imageCpu[0]!), textCpu: median(textCpu[0]!) };
  models.forEach((m, k) =>
    record(`int8 vs fp32 speed (${THREADS} threads, alternating rounds, medians)`, {
      model: m.name,
      'images/s (batch 8)': +median(images[k]!).toFixed(2),
      'image ×fp32': +(median(images[k]!) / base.image).toFixed(2),
      'texts/s (1 phrase)': +median(texts[k]!).toFixed(1),
      'text ×fp32': +(median(texts[k]!) / base.text).toFixed(2),
      'images per CPU-s': +median(imageCpu[k]!).toFixed(2),
      'image CPU ×fp32': +(median(imageCpu[k]!) / base.imageCpu).toFixed(2),
      'texts per CPU-s': +median(textCpu[k]!).toFixed(1),
      'text CPU ×fp32': +(median(textCpu[k]!) / base.textCpu).toFixed(2),
    }),
  );
}

const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

async function embedAll(m: Loaded, tensor: Float32Array, count: number): Promise<{ images: Float32Array[]; texts: Float32Array[] }> {
  const plane = 3 * m.spec.preprocess.size ** 2;
  const images: Float32Array[] = [];
  for (let i = 0; i < count; i += BATCH) {
    const n = Math.min(BATCH, count - i);
    images.push(...(await m.image.encode(tensor.subarray(i * plane, (i + n) * plane), n)));
  }
  return { images, texts: await m.text.encode([...AGREEMENT_PHRASES]) };
}

async function agreement(models: Loaded[], label: string): Promise<void> {
  const files = photoFiles();
  if (files.length === 0) {
    record(`agreement with fp32 (${label})`, { status: `skipped: ${PHOTOS} not found` });
    return;
  }
  const batch = await preprocessBatch(files, models[0]!.spec.preprocess, { concurrency: 2 });
  const ok = batch.items.filter((i) => i.ok).length;
  if (ok !== files.length) throw new Error(`${files.length - ok} shared photos did not decode`);
  const ref = await embedAll(models[0]!, batch.tensor, files.length);
  for (const m of models.slice(1)) {
    const e = await embedAll(m, batch.tensor, files.length);
    record(`agreement with fp32 (${label}; ${files.length} shared photos, ${AGREEMENT_PHRASES.length} phrases)`, {
      model: m.name,
      'image mean cos': +meanCosine(ref.images, e.images).toFixed(4),
      'image min cos': +minCosine(ref.images, e.images).toFixed(4),
      'text mean cos': +meanCosine(ref.texts, e.texts).toFixed(4),
      'text min cos': +minCosine(ref.texts, e.texts).toFixed(4),
      'top-10 overlap': +topKOverlap(ref, e, 10).toFixed(3),
    });
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await ensureModel();
  const dirs: [string, string][] = [['fp32', MODEL_DIR]];
  for (const v of VARIANTS) {
    const dir = join(OUT, `vit-b-32-int8-${v.format}${v.fuse ? '' : '-unfused'}`);
    await ensureInt8(MODEL_DIR, v, dir);
    dirs.push([v.name, dir]);
  }
  const models: Loaded[] = [];
  for (const [name, dir] of dirs) {
    try {
      models.push(await load(name, dir));
    } catch (err) {
      record('int8 formulations that did not load', { model: name, error: err instanceof Error ? err.message.slice(0, 300) : String(err) });
    }
  }
  await speed(models);
  if (process.env.BENCH_SKIP_AGREEMENT !== '1') await agreement(models, 'self-built vit-b-32, seeded random weights');
  for (const m of models) await m.release();

  // As in conformance-real-model.test.ts: one folder, or several separated by the path delimiter.
  for (const [i, real] of (process.env.CLIPDEX_REAL_MODEL_DIR ?? '').split(delimiter).filter((d) => d !== '').entries()) {
    const realModels: Loaded[] = [await load('fp32', real)];
    for (const v of VARIANTS) {
      const dir = join(OUT, `real-${i}-int8-${v.format}${v.fuse ? '' : '-unfused'}`);
      await ensureInt8(real, v, dir);
      realModels.push(await load(v.name, dir));
    }
    await agreement(realModels, `real model ${real}`);
    for (const m of realModels) await m.release();
  }
  const file = join(OUT, 'quantize.json');
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), quick: QUICK, threads: THREADS, loadavg: loadavg(), results }, null, 2)}\n`);
  console.log(`\nwritten ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
