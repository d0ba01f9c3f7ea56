/**
 * npm run bench:ingest — ingestion end to end.
 *
 *   1. Throughput: N generated 4000×3000 JPEGs (bench/out/ingest-jpegs, made once and reused) indexed by the
 *      ingest engine with the `vit-b-32` preset model (scan → read+hash → decode+thumbnail → encoder →
 *      SQLite), against the encoder alone (random pixels, same batch, same thread setup) measured in the
 *      same run before and after. Goal (issue 19): end to end ≥ 0.75 × encoder-only.
 *   2. What limits it: CPU time per image of each stage (read+hash+EXIF, decode, preprocess, thumbnail, encode,
 *      and the rest: store and pipeline), from process.cpuUsage() with one stage at a time over a sample, for
 *      the one-decode path (issue 19) and the old one (each render decoding the file, `decode: 'per-render'`),
 *      and the throughput those allow on this machine's cores.
 *   Both paths also run end to end in the same run (old first), each against the same encoder-only rate.
 *   OCR is off in these runs (bench:ocr measures ingest with it).
 *   3. Memory: peak RSS sampled every 100 ms, and RSS after N/4, N/2 and N files (goal: flat).
 *   4. Latency with the tiny model: a file written into a watched folder → found by search (p50, max).
 *
 * Env: BENCH_QUICK=1 (100 files, shorter timings), BENCH_FILES=n, BENCH_MODEL_DIR (a built vit-b-32),
 * BENCH_COMPARE_MAIN=1 (also run end to end with the encoder on the main thread, at the chosen batch and at 1).
 * Results: bench/out/ingest.json.
 */
import { existsSync, linkSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { ThreadImageEncoder } from '../src/ingest/encoder-thread.js';
import { IngestEngine, type IngestEngineOptions } from '../src/ingest/ingest-engine.js';
import { Library } from '../src/library/library.js';
import { readFileSnapshot } from '../src/ingest/content-hash.js';
import { readExifMeta } from '../src/ingest/exif-meta.js';
import { openImage, type RgbPixels } from '../src/model/image-decode.js';
import {
  kernelFor,
  normalizeToChw,
  openForRenders,
  preprocessImage,
  thumbnailBox,
  thumbnailOptions,
  type DecodeMode,
} from '../src/model/image-preprocess.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';

const QUICK = process.env.BENCH_QUICK === '1';
const N = Number(process.env.BENCH_FILES ?? (QUICK ? 100 : 1000));
const OUT = resolve('bench/out');
const MODEL_DIR = resolve(process.env.BENCH_MODEL_DIR ?? join(OUT, 'vit-b-32'));
const TINY_DIR = join(OUT, 'tiny-ingest');
const JPEG_DIR = join(OUT, 'ingest-jpegs');
const sharedVocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: `${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), Node ${process.versions.node}`,
  files: N,
  quick: QUICK,
};
const log = (msg: string) => console.log(msg);
const mb = (bytes: number) => Math.round(bytes / 2 ** 20);

async function ensureModel(): Promise<void> {
  if (existsSync(join(MODEL_DIR, 'onnx', 'vision_model.onnx')) && existsSync(join(MODEL_DIR, 'tokenizer_config.json'))) return;
  log(`building the vit-b-32 preset into ${MODEL_DIR} …`);
  await buildTinyModel({ out: MODEL_DIR, preset: 'vit-b-32', vocab: existsSync(sharedVocab) ? sharedVocab : undefined, force: true });
}

/**
 * A 4000×3000 photo-like JPEG (~1.7 MB at q90: smooth colour fields plus fine noise, so it compresses and
 * decodes like a photograph, not like a flat colour). Pixels are made in JS from tables (~0.3 s), so
 * 1,000 files take minutes, not the hour libvips' noise composite would.
 */
function photoPixels(i: number): Buffer {
  const w = 4000;
  const h = 3000;
  const raw = Buffer.allocUnsafe(w * h * 3);
  const rx = new Float32Array(w).map((_, x) => 128 + 100 * Math.sin(6.3 * (x / w) + i));
  const gy = new Float32Array(h).map((_, y) => 128 + 100 * Math.sin(4.1 * (y / h) + 0.7 * i));
  const bxy = new Float32Array(2 * w).map((_, k) => 128 + 90 * Math.sin(5.0 * (k / w) + 0.3 * i));
  let s = (i * 2654435761) >>> 0 || 1;
  for (let y = 0, o = 0; y < h; y++) {
    const g0 = gy[y]!;
    const shift = Math.floor((y * w) / h);
    for (let x = 0; x < w; x++, o += 3) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      raw[o] = Math.max(0, Math.min(255, rx[x]! + (s & 15) - 8));
      raw[o + 1] = Math.max(0, Math.min(255, g0 + ((s >>> 8) & 15) - 8));
      raw[o + 2] = Math.max(0, Math.min(255, bxy[x + shift]! + ((s >>> 16) & 15) - 8));
    }
  }
  return raw;
}

const jpegPath = (i: number) => join(JPEG_DIR, `photo-${i}.jpg`);

async function makeJpeg(i: number): Promise<void> {
  const file = jpegPath(i);
  const tmp = `${file}.partial`;
  await sharp(photoPixels(i), { raw: { width: 4000, height: 3000, channels: 3 } }).jpeg({ quality: 90 }).toFile(tmp);
  renameSync(tmp, file);
}

/** bench/out/ingest-root-N: hard links to the first N pictures (a root holding exactly those). */
async function makeRoot(): Promise<string> {
  mkdirSync(JPEG_DIR, { recursive: true });
  const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !existsSync(jpegPath(i)));
  if (missing.length > 0) {
    log(`generating ${missing.length} 4000×3000 JPEGs into ${JPEG_DIR} (once) …`);
    const t = performance.now();
    // The JPEG encode of one runs in libvips while the next one's pixels are made here.
    let inFlight: Promise<void> = Promise.resolve();
    for (const i of missing) {
      const next = makeJpeg(i);
      await inFlight;
      inFlight = next;
    }
    await inFlight;
    log(`  generated in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  const root = join(OUT, `ingest-root-${N}`);
  mkdirSync(root, { recursive: true });
  const have = new Set(readdirSync(root));
  for (let i = 0; i < N; i++) if (!have.has(`photo-${i}.jpg`)) linkSync(jpegPath(i), join(root, `photo-${i}.jpg`));
  return root;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/** Encoder alone: random pixels through the same kind of encoder the engine uses, for `seconds`. */
async function encoderOnly(batch: number, seconds: number): Promise<{ imagesPerSecond: number; cpuMsPerImage: number }> {
  const spec = await readModelDir(MODEL_DIR);
  const encoder = await ThreadImageEncoder.open(spec, { batch });
  const S = spec.preprocess.size;
  const make = () => new Float32Array(batch * 3 * S * S).map(() => Math.random() * 2 - 1);
  try {
    await encoder.encode(make(), batch); // warm-up
    const inputs = Array.from({ length: 4 }, make);
    let n = 0;
    const cpu = process.cpuUsage();
    const t = performance.now();
    while (performance.now() - t < seconds * 1000) {
      // The buffer is handed to the thread; each round sends a copy, as the pipeline sends a fresh tensor.
      await encoder.encode(inputs[n % 4]!.slice(), batch);
      n += batch;
    }
    const elapsed = (performance.now() - t) / 1000;
    return { imagesPerSecond: n / elapsed, cpuMsPerImage: (1000 * cpuSeconds(cpu)) / n };
  } finally {
    await encoder.close();
  }
}

type StageCpu = Record<string, number>;

/**
 * CPU ms per photo of each stage, one photo at a time and one stage over the whole sample before the next (so
 * each process.cpuUsage() window holds that stage alone, libvips' threads included). 'once' is the ingest path
 * of issue 19; 'per-render' the old one, where decoding and resizing are one libvips pipeline per render, so
 * its decode and preprocess are one figure and its thumbnail includes a decode of its own.
 */
async function stageCpu(files: string[], decode: DecodeMode): Promise<StageCpu> {
  const spec = await readModelDir(MODEL_DIR);
  const config = spec.preprocess;
  const thumb = thumbnailOptions(true)!;
  const n = files.length;
  const per = async <T>(work: (i: number) => Promise<T>): Promise<{ ms: number; out: T[] }> => {
    await work(0); // warm-up, not counted
    const out: T[] = [];
    const cpu = process.cpuUsage();
    for (let i = 0; i < n; i++) out.push(await work(i));
    return { ms: (1000 * cpuSeconds(cpu)) / n, out };
  };
  const read = await per(async (i) => {
    const snap = await readFileSnapshot(files[i]!);
    await readExifMeta(snap.bytes);
    return snap.bytes;
  });
  const bytes = read.out;
  const out: StageCpu = { 'read+hash+EXIF': read.ms };
  const chw = (rgb: RgbPixels) => normalizeToChw(rgb.data, config, new Float32Array(3 * config.size * config.size));
  if (decode === 'once') {
    const decoded = await per(async (i) => (await openForRenders(bytes[i]!, config, { thumbnail: true }, [thumbnailBox(thumb)])));
    const pre = await per(async (i) => {
      const { image, plan } = decoded.out[i]!;
      chw(await image.rgb({ resize: { ...plan.resize, kernel: kernelFor(config.interpolation) }, extract: plan.crop }));
    });
    const th = await per(async (i) => decoded.out[i]!.image.thumbnail(thumb));
    Object.assign(out, { decode: decoded.ms, preprocess: pre.ms, thumbnail: th.ms });
  } else {
    const pre = await per(async (i) => {
      const { image, plan } = await openForRenders(bytes[i]!, config, { decode: 'per-render' }, []);
      chw(await image.rgb({ resize: { ...plan.resize, kernel: kernelFor(config.interpolation) }, extract: plan.crop }));
    });
    const th = await per(async (i) => (await openImage(bytes[i]!)).thumbnail(thumb));
    Object.assign(out, { 'decode+preprocess': pre.ms, 'thumbnail (its own decode)': th.ms });
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, +v.toFixed(1)]));
}

/** Decoding as the pipeline does it (read, decode, resize, crop, optional thumbnail), 2 at a time. */
async function decodeOnly(files: string[], thumbnail: boolean, decode: DecodeMode = 'once'): Promise<{ imagesPerSecond: number; cpuMsPerImage: number }> {
  const spec = await readModelDir(MODEL_DIR);
  const { readFile } = await import('node:fs/promises');
  await preprocessImage(await readFile(files[0]!), spec.preprocess, { thumbnail, decode });
  const cpu = process.cpuUsage();
  const t = performance.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) await preprocessImage(await readFile(files[i]!), spec.preprocess, { thumbnail, decode });
  };
  await Promise.all([worker(), worker()]);
  const elapsed = (performance.now() - t) / 1000;
  return { imagesPerSecond: files.length / elapsed, cpuMsPerImage: (1000 * cpuSeconds(cpu)) / files.length };
}

async function endToEnd(root: string, options: Partial<IngestEngineOptions>, label: string) {
  const dataDir = join(OUT, 'ingest-data');
  rmSync(dataDir, { recursive: true, force: true });
  const lib = await Library.open({ dataDir, model: MODEL_DIR });
  const rssOpen = mb(process.memoryUsage.rss());
  // How long the event loop was held at a time: what a server in the same process would feel.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const marks = [Math.round(N / 4), Math.round(N / 2), N];
  const rssAt: Record<string, number> = {};
  let peak = process.memoryUsage.rss();
  let done = 0;
  const sampler = setInterval(() => {
    const rss = process.memoryUsage.rss();
    peak = Math.max(peak, rss);
    for (const m of marks) if (done >= m && rssAt[m] === undefined) rssAt[m] = mb(rss);
  }, 100);
  let firstAt = 0;
  let lastAt = 0;
  const cpu = process.cpuUsage();
  const t = performance.now();
  const engine = await IngestEngine.start(lib, {
    roots: [root],
    watch: false,
    ocr: false,
    ...options,
    onEvent: (e) => {
      if (e.type === 'indexed' || e.type === 'error') {
        done++;
        lastAt = performance.now();
        if (!firstAt) firstAt = lastAt;
      }
    },
  });
  await engine.idle();
  const elapsed = (performance.now() - t) / 1000;
  const cpuTotal = cpuSeconds(cpu);
  lag.disable();
  const status = engine.status();
  await engine.close();
  clearInterval(sampler);
  for (const m of marks) rssAt[m] ??= mb(process.memoryUsage.rss());
  await lib.close();
  const steady = N > 1 && lastAt > firstAt ? (N - 1) / ((lastAt - firstAt) / 1000) : 0;
  const row = {
    label,
    'images/s (start → idle)': +(N / elapsed).toFixed(2),
    'images/s (first → last file)': +steady.toFixed(2),
    seconds: +elapsed.toFixed(1),
    'CPU ms/image': +((1000 * cpuTotal) / N).toFixed(0),
    'RSS MB with the library open': rssOpen,
    'peak RSS MB': mb(peak),
    'event loop delay p99 / max ms': `${Math.round(lag.percentile(99) / 1e6)} / ${Math.round(lag.max / 1e6)}`,
    'RSS MB after files': rssAt,
    encoded: status.progress.encoded,
    failed: status.progress.errors,
  };
  log(`end to end (${label}): ${JSON.stringify(row)}`);
  return row;
}

async function latency(): Promise<{ p50: number; max: number; samples: number[] }> {
  if (!existsSync(join(TINY_DIR, 'onnx', 'vision_model.onnx'))) await buildTinyModel({ out: TINY_DIR, seed: 1, force: true });
  const base = join(OUT, 'ingest-latency');
  rmSync(base, { recursive: true, force: true });
  const root = join(base, 'watched');
  const staging = join(base, 'staging');
  mkdirSync(root, { recursive: true });
  mkdirSync(staging, { recursive: true });
  const lib = await Library.open({ dataDir: join(base, 'data'), model: TINY_DIR });
  const { model, index } = lib.requireModel();
  const count = QUICK ? 8 : 20;
  // Photo-sized files (1600×1200), each embedded beforehand so that "found" means found by its own picture.
  const files: { name: string; bytes: Buffer; query: Float32Array }[] = [];
  for (let i = 0; i < count; i++) {
    const bytes = await sharp(jpegPath(i)).resize(1600, 1200).jpeg({ quality: 88 }).toBuffer();
    const tmp = join(staging, `l${i}.jpg`);
    writeFileSync(tmp, bytes);
    const [r] = await model.embedImages([tmp]);
    if (!r?.ok) throw new Error(`cannot embed ${tmp}`);
    files.push({ name: `landed-${i}.jpg`, bytes, query: r.embedding });
  }
  const engine = await IngestEngine.start(lib, { roots: [root] });
  await engine.idle();
  const samples: number[] = [];
  const { writeFile } = await import('node:fs/promises');
  for (const f of files) {
    const path = join(root, f.name);
    await writeFile(path, f.bytes);
    const t0 = performance.now();
    for (;;) {
      const [hit] = await index.search(f.query, 1);
      if (hit && lib.images.get(hit.id)?.path === path) break;
      if (performance.now() - t0 > 30_000) throw new Error(`${path} not searchable after 30 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    samples.push(Math.round(performance.now() - t0));
    await new Promise((r) => setTimeout(r, 300));
  }
  await engine.close();
  await lib.close();
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: sorted[Math.floor(sorted.length / 2)]!, max: sorted[sorted.length - 1]!, samples };
}

async function main(): Promise<void> {
  await ensureModel();
  const root = await makeRoot();
  const spec = await readModelDir(MODEL_DIR);
  const encSeconds = QUICK ? 6 : 15;

  const batches = [8, 16];
  const encBefore: Record<number, { imagesPerSecond: number; cpuMsPerImage: number }> = {};
  for (const b of batches) {
    encBefore[b] = await encoderOnly(b, encSeconds);
    log(`encoder only, batch ${b}: ${encBefore[b]!.imagesPerSecond.toFixed(2)} img/s, ${encBefore[b]!.cpuMsPerImage.toFixed(0)} CPU ms/image`);
  }
  const batch = encBefore[8]!.imagesPerSecond >= encBefore[16]!.imagesPerSecond ? 8 : 16;
  log(`using batch ${batch} for the end-to-end run`);

  const sample = Array.from({ length: Math.min(QUICK ? 24 : 48, N) }, (_, i) => join(root, `photo-${i}.jpg`));
  const decodeThumbOld = await decodeOnly(sample, true, 'per-render');
  const decodeThumb = await decodeOnly(sample, true);
  const decodeBare = await decodeOnly(sample, false);
  log(`decode only (2 at a time): with thumbnail ${decodeThumb.imagesPerSecond.toFixed(1)} img/s, ${decodeThumb.cpuMsPerImage.toFixed(0)} CPU ms/image (old two-decode path ${decodeThumbOld.imagesPerSecond.toFixed(1)} img/s, ${decodeThumbOld.cpuMsPerImage.toFixed(0)} CPU ms/image); without ${decodeBare.imagesPerSecond.toFixed(1)} img/s, ${decodeBare.cpuMsPerImage.toFixed(0)} CPU ms/image`);
  const stagesOld = await stageCpu(sample, 'per-render');
  const stagesNew = await stageCpu(sample, 'once');
  log(`CPU ms per photo by stage, old: ${JSON.stringify(stagesOld)}`);
  log(`CPU ms per photo by stage, one decode: ${JSON.stringify(stagesNew)}`);

  // The alternatives first (RSS is never given back to the OS within a process, so the last run's peak
  // would include the earlier ones'); the engine's default setup last, for the ratio.
  const alternatives = [];
  if (process.env.BENCH_COMPARE_MAIN === '1') {
    alternatives.push(await endToEnd(root, { batchSize: batch, encoderThread: false }, `encoder on the main thread, batch ${batch}`));
    alternatives.push(await endToEnd(root, { batchSize: 1, encoderThread: false }, 'encoder on the main thread, batch 1'));
  }
  const e2eOld = await endToEnd(root, { batchSize: batch, decode: 'per-render' }, `old two-decode path, encoder thread, batch ${batch}`);
  const e2e = await endToEnd(root, { batchSize: batch }, `encoder thread, batch ${batch}`);

  const encAfter = await encoderOnly(batch, encSeconds);
  log(`encoder only again, batch ${batch}: ${encAfter.imagesPerSecond.toFixed(2)} img/s`);
  const encoderRate = (encBefore[batch]!.imagesPerSecond + encAfter.imagesPerSecond) / 2;
  const cores = availableParallelism();
  // If every core were busy all the time: the throughput the CPU work per image allows.
  const cpuBound = (1000 * cores) / (encBefore[batch]!.cpuMsPerImage + decodeThumb.cpuMsPerImage);
  results.model = spec.id;
  results.encoderOnly = {
    batch,
    'images/s before': +encBefore[batch]!.imagesPerSecond.toFixed(2),
    'images/s after': +encAfter.imagesPerSecond.toFixed(2),
    'CPU ms/image': +encBefore[batch]!.cpuMsPerImage.toFixed(0),
    otherBatch: Object.fromEntries(batches.filter((b) => b !== batch).map((b) => [b, +encBefore[b]!.imagesPerSecond.toFixed(2)])),
  };
  const encMs = encBefore[batch]!.cpuMsPerImage;
  // What the stages measured alone do not hold: SQLite, the thumbnail file, the pipeline, the encoder thread's hand-off.
  const rest = (row: typeof e2e, stages: StageCpu) => +(row['CPU ms/image'] - encMs - Object.values(stages).reduce((a, b) => a + b, 0)).toFixed(1);
  results.stageCpuMsPerPhoto = {
    old: { ...stagesOld, encode: +encMs.toFixed(1), 'store and the rest (end to end minus the stages)': rest(e2eOld, stagesOld), 'end to end': e2eOld['CPU ms/image'] },
    oneDecode: { ...stagesNew, encode: +encMs.toFixed(1), 'store and the rest (end to end minus the stages)': rest(e2e, stagesNew), 'end to end': e2e['CPU ms/image'] },
  };
  log(`stages: ${JSON.stringify(results.stageCpuMsPerPhoto)}`);
  results.decodeOnly = {
    'old two-decode path with thumbnail: images/s': +decodeThumbOld.imagesPerSecond.toFixed(1),
    'old two-decode path with thumbnail: CPU ms/image': +decodeThumbOld.cpuMsPerImage.toFixed(0),
    'with thumbnail: images/s': +decodeThumb.imagesPerSecond.toFixed(1),
    'with thumbnail: CPU ms/image': +decodeThumb.cpuMsPerImage.toFixed(0),
    'without thumbnail: images/s': +decodeBare.imagesPerSecond.toFixed(1),
    'without thumbnail: CPU ms/image': +decodeBare.cpuMsPerImage.toFixed(0),
  };
  results.endToEnd = e2e;
  results.endToEndOld = e2eOld;
  if (alternatives.length > 0) results.endToEndAlternatives = alternatives;
  results.ratio = {
    'old two-decode path: end to end / encoder only': +(e2eOld['images/s (start → idle)'] / encoderRate).toFixed(2),
    'old two-decode path: steady end to end / encoder only': +(e2eOld['images/s (first → last file)'] / encoderRate).toFixed(2),
    'end to end / encoder only': +(e2e['images/s (start → idle)'] / encoderRate).toFixed(2),
    'steady end to end / encoder only': +(e2e['images/s (first → last file)'] / encoderRate).toFixed(2),
    goal: 0.75,
    [`CPU-bound ceiling on ${cores} cores (images/s)`]: +cpuBound.toFixed(2),
    'ceiling / encoder only': +(cpuBound / encoderRate).toFixed(2),
  };
  log(`ratio: ${JSON.stringify(results.ratio)}`);

  const lat = await latency();
  results.latency = { 'p50 ms': lat.p50, 'max ms': lat.max, samples: lat.samples, goal: '≤ 1500 ms' };
  log(`latency file → searchable (tiny model, default settings): p50 ${lat.p50} ms, max ${lat.max} ms`);

  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'ingest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`written to ${join(OUT, 'ingest.json')}`);
}

await main();
