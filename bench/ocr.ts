/**
 * npm run bench:ocr — text in photos, the candidates side by side on the same images.
 *
 *   the set of test/helpers/ocr-photos.ts (words rendered onto ../shared/photos under 9 conditions) plus
 *   skimage/page.png: character error rate and word recall per condition, CPU-ms and wall-ms per photo, peak
 *   memory (RSS) — for clipdex's PP-OCRv4 engine (src/ocr/), tesseract.js + @tesseract.js-data/eng, and
 *   @gutenye/ocr-node when OCR_NODE_DIR points at an install of it (it is not a dependency: it brings its own
 *   sharp 0.33 and onnxruntime-node);
 *   beside them the CLIP ViT-B/32 image encode (self-built preset, batch 8), CPU-ms per photo.
 *
 * Each candidate runs in a child process of its own, so its memory is its own.
 *
 * BENCH_ONLY=ingest: the same rendered photos mixed with ../shared/photos/labeled, ingested by the real
 * IngestEngine on the ViT-B/32 preset with OCR off and on (time to CLIP-searchable, time until the text is
 * read too, CPU), and on the OCR-on library the text-query recall@10 of the rendered words (typed lower case
 * without accents) with CLIP alone and with the text merged.
 *
 * Options (env): BENCH_PER_CONDITION (photos per condition, default 12), BENCH_THREADS (ORT threads,
 * default 2), OCR_NODE_DIR=/path/to/node_modules/@gutenye/ocr-node, BENCH_ONLY=candidates|ingest.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { decodeRgb } from '../src/model/image-decode.js';
import { OcrEngine } from '../src/ocr/ocr-engine.js';
import { characterErrorRate, makeOcrPhotos, wordsFound, type OcrPhoto } from '../test/helpers/ocr-photos.js';
import { sharedPath } from '../test/helpers/shared.js';

const PER = Number(process.env.BENCH_PER_CONDITION ?? 12);
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const OUT = resolve('bench/out');

export const PAGE_TRUTH = [
  'Region-based segmentation',
  'Let us first determine markers of the coins and the',
  'background. These markers are pixels that we can label',
  'unambiguously as either object or background. Here,',
  'the markers are found at the two extreme parts of the',
  'histogram of grey values:',
  '>>> markers = np.zeros_like(coins)',
];

interface Sample {
  condition: string;
  truth: string;
  lines: string[];
  cpuMs: number;
  wallMs: number;
}

type Reader = (photo: OcrPhoto, file: string) => Promise<string[]>;

async function readerFor(candidate: string): Promise<{ read: Reader; close: () => Promise<void> }> {
  if (candidate === 'clipdex-ppocr') {
    const engine = await OcrEngine.open({ session: { threads: THREADS, providers: ['cpu'] } });
    return {
      read: async (p) => (await engine.recognize(await decodeRgb(p.png))).lines.map((l) => l.text),
      close: () => engine.release(),
    };
  }
  if (candidate === 'tesseract.js') {
    const { createWorker, OEM } = await import('tesseract.js');
    const langPath = join(resolve('node_modules/@tesseract.js-data/eng'), '4.0.0_best_int');
    const worker = await createWorker('eng', OEM.LSTM_ONLY, { langPath, gzip: true, cacheMethod: 'none' });
    return {
      read: async (p) => {
        const { data } = await worker.recognize(p.png);
        return data.text.split('\n').map((l) => l.trim()).filter(Boolean);
      },
      close: async () => void (await worker.terminate()),
    };
  }
  if (candidate === 'gutenye-ocr-node') {
    const dir = process.env.OCR_NODE_DIR;
    if (!dir) throw new Error('OCR_NODE_DIR is not set');
    const mod = (await import(pathToFileURL(join(dir, 'build', 'index.js')).href)) as {
      default: { create(): Promise<{ detect(path: string): Promise<{ text: string; mean: number }[]> }> };
    };
    const ocr = await mod.default.create();
    return { read: async (_p, file) => (await ocr.detect(file)).map((l) => l.text), close: async () => undefined };
  }
  throw new Error(`unknown candidate ${candidate}`);
}

/** Child: reads every photo of the set with one candidate and writes its samples as JSON. */
async function child(candidate: string, setDir: string, out: string): Promise<void> {
  const manifest = JSON.parse(readFileSync(join(setDir, 'set.json'), 'utf8')) as { name: string; condition: string; truth: string }[];
  const reader = await readerFor(candidate);
  const samples: Sample[] = [];
  // Warm-up on the first photo: the first run plans the graphs (or loads the traineddata).
  const first = manifest[0]!;
  await reader.read({ ...first, png: readFileSync(join(setDir, `${first.name}.png`)) }, join(setDir, `${first.name}.png`));
  for (const m of manifest) {
    const file = join(setDir, `${m.name}.png`);
    const photo: OcrPhoto = { ...m, png: readFileSync(file) };
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const lines = await reader.read(photo, file);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    samples.push({ condition: m.condition, truth: m.truth, lines, cpuMs: (cpu.user + cpu.system) / 1000, wallMs });
  }
  await reader.close();
  writeFileSync(out, JSON.stringify({ samples, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
}

/** Child: CPU-ms per photo of the CLIP ViT-B/32 image encode (decode + preprocess, then batches of 8). */
async function clipChild(setDir: string, out: string): Promise<void> {
  const { buildTinyModel } = await import('../src/model/tiny-model-builder.js');
  const { readModelDir } = await import('../src/model/model-dir.js');
  const { openTower } = await import('../src/model/tower-session.js');
  const { ImageEncoder } = await import('../src/model/image-encoder.js');
  const { preprocessBatch } = await import('../src/model/image-preprocess.js');
  const dir = join(OUT, 'vit-b-32');
  if (!existsSync(join(dir, 'onnx', 'vision_model.onnx'))) {
    const vocab = sharedPath('clip', 'bpe_simple_vocab_16e6.txt.gz') ?? undefined;
    await buildTinyModel({ out: dir, preset: 'vit-b-32', vocab, force: true });
  }
  const spec = await readModelDir(dir);
  const tower = await openTower(join(dir, spec.vision.file), spec.vision, 'image', { threads: THREADS, providers: ['cpu'] });
  const encoder = new ImageEncoder(tower, spec.preprocess.size, 8);
  const manifest = JSON.parse(readFileSync(join(setDir, 'set.json'), 'utf8')) as { name: string }[];
  const files = manifest.map((m) => join(setDir, `${m.name}.png`));
  const warm = await preprocessBatch(files.slice(0, 8), spec.preprocess);
  await encoder.encode(warm.tensor, warm.dims[0]);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let decodeCpu = 0;
  for (let i = 0; i < files.length; i += 8) {
    const c = process.cpuUsage();
    const batch = await preprocessBatch(files.slice(i, i + 8), spec.preprocess);
    const d = process.cpuUsage(c);
    decodeCpu += (d.user + d.system) / 1000;
    await encoder.encode(batch.tensor, batch.dims[0]);
  }
  const cpu = process.cpuUsage(cpu0);
  const total = (cpu.user + cpu.system) / 1000;
  writeFileSync(
    out,
    JSON.stringify({
      photos: files.length,
      cpuMsPerPhoto: total / files.length,
      encodeCpuMsPerPhoto: (total - decodeCpu) / files.length,
      wallMsPerPhoto: (performance.now() - t0) / files.length,
      maxRssMb: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

const fmt = (x: number, d = 0) => x.toFixed(d);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Ingest with OCR off and on, and recall@10 with the text merged or not (BENCH_ONLY=ingest). */
async function ingestBench(photos: OcrPhoto[]): Promise<void> {
  const { IngestEngine } = await import('../src/ingest/ingest-engine.js');
  const { Library } = await import('../src/library/library.js');
  const { QueryEngine } = await import('../src/search/query-engine.js');
  const { parseQueryText, searchRequestOf } = await import('../src/search/query-syntax.js');
  const { fold } = await import('../test/helpers/ocr-photos.js');
  const { buildTinyModel } = await import('../src/model/tiny-model-builder.js');
  const modelDir = join(OUT, 'vit-b-32');
  if (!existsSync(join(modelDir, 'onnx', 'vision_model.onnx'))) {
    await buildTinyModel({ out: modelDir, preset: 'vit-b-32', vocab: sharedPath('clip', 'bpe_simple_vocab_16e6.txt.gz') ?? undefined, force: true });
  }
  const tmp = mkdtempSync(join(tmpdir(), 'clipdex-ocr-ingest-'));
  const dir = join(tmp, 'photos');
  mkdirSync(dir);
  for (const p of photos) writeFileSync(join(dir, `${p.name}.png`), p.png);
  const labeled = sharedPath('photos', 'labeled')!;
  const { readdirSync, copyFileSync } = await import('node:fs');
  for (const sub of readdirSync(labeled)) {
    for (const f of readdirSync(join(labeled, sub)).filter((x) => /\.(jpe?g|png|webp)$/i.test(x))) copyFileSync(join(labeled, sub, f), join(dir, `${sub}-${f}`));
  }
  const total = readdirSync(dir).length;
  const rows: string[] = ['| OCR | photos | CLIP-searchable after | text read after | CPU-s | CPU-ms per photo |', '|---|---|---|---|---|---|'];
  for (const ocr of [false, true]) {
    const lib = await Library.open({ dataDir: join(tmp, `data-${ocr ? 'on' : 'off'}`), model: modelDir, session: { providers: ['cpu'], threads: THREADS } });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const engine = await IngestEngine.start(lib, { roots: [dir], watch: false, ocr: ocr ? { session: { providers: ['cpu'], threads: THREADS } } : false });
    await engine.idle();
    const clipS = (performance.now() - t0) / 1000;
    await engine.ocrIdle();
    const allS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    const status = engine.ocrStatus();
    await engine.close();
    rows.push(`| ${ocr ? 'on' : 'off'} | ${total} | ${clipS.toFixed(1)} s | ${ocr ? `${allS.toFixed(1)} s (${status.done} read, ${status.failed} failed)` : '—'} | ${cpuS.toFixed(1)} | ${fmt((cpuS * 1000) / total)} |`);
    console.log(rows.at(-1));
    if (ocr) {
      const engineQ = new QueryEngine(lib);
      const recall = async (text: boolean) => {
        let found = 0;
        for (const p of photos) {
          const parsed = parseQueryText(fold(p.truth));
          const r = await engineQ.search(searchRequestOf(parsed, { limit: 10, ...(text ? {} : { text: false as const }) }));
          if (r.results.some((x) => x.path === join(dir, `${p.name}.png`))) found++;
        }
        return found / photos.length;
      };
      const clipOnly = await recall(false);
      const merged = await recall(true);
      rows.push('', `text-query recall@10 of the ${photos.length} rendered words among ${total} photos: CLIP alone ${clipOnly.toFixed(3)}, text merged (RRF) ${merged.toFixed(3)}`);
    }
    await lib.close();
  }
  const text = rows.join('\n');
  console.log(`\n${text}`);
  writeFileSync(join(OUT, 'ocr-ingest.md'), `${text}\n`);
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === '--child') return child(args[0]!, args[1]!, args[2]!);
  if (mode === '--clip') return clipChild(args[0]!, args[1]!);
  const page = sharedPath('photos', 'skimage', 'page.png');
  const photos = await makeOcrPhotos(PER);
  if (photos.length === 0 || !page) {
    console.log('bench:ocr needs ../shared/photos beside the project: skipped');
    return;
  }
  mkdirSync(OUT, { recursive: true });
  if (process.env.BENCH_ONLY === 'ingest') return ingestBench(photos);
  const setDir = mkdtempSync(join(tmpdir(), 'clipdex-ocr-set-'));
  const all = [...photos, { name: 'page', condition: 'page.png', truth: PAGE_TRUTH.join('\n'), png: readFileSync(page) }];
  for (const p of all) writeFileSync(join(setDir, `${p.name}.png`), p.png);
  writeFileSync(join(setDir, 'set.json'), JSON.stringify(all.map(({ name, condition, truth }) => ({ name, condition, truth }))));
  console.log(`${all.length} photos (${PER} per condition + page.png) in ${setDir}; ORT threads ${THREADS}`);

  const candidates = ['clipdex-ppocr', 'tesseract.js', ...(process.env.OCR_NODE_DIR ? ['gutenye-ocr-node'] : [])];
  const self = resolve('bench/ocr.ts');
  const tsx = resolve('node_modules/.bin/tsx');
  const results: Record<string, { samples: Sample[]; maxRssMb: number }> = {};
  for (const c of candidates) {
    const out = join(setDir, `${c}.json`);
    console.log(`reading with ${c} …`);
    execFileSync(tsx, [self, '--child', c, setDir, out], { stdio: 'inherit' });
    results[c] = JSON.parse(readFileSync(out, 'utf8'));
  }
  const clipOut = join(setDir, 'clip.json');
  console.log('CLIP ViT-B/32 image encode …');
  execFileSync(tsx, [self, '--clip', setDir, clipOut], { stdio: 'inherit' });
  const clip = JSON.parse(readFileSync(clipOut, 'utf8')) as { cpuMsPerPhoto: number; encodeCpuMsPerPhoto: number; wallMsPerPhoto: number; maxRssMb: number };

  const conditions = [...new Set(all.map((p) => p.condition))];
  const rows: string[] = [];
  rows.push(`| condition | ${candidates.map((c) => `${c}: CER / word recall / folded`).join(' | ')} |`);
  rows.push(`|---|${candidates.map(() => '---').join('|')}|`);
  const summary = (ss: Sample[]) => {
    const pageLines = ss.filter((s) => s.condition === 'page.png');
    const rest = ss.filter((s) => s.condition !== 'page.png');
    const cer = (list: Sample[]) => list.reduce((a, s) => a + (s.condition === 'page.png' ? pageCer(s) : characterErrorRate(s.truth, s.lines)), 0) / Math.max(1, list.length);
    const recall = (list: Sample[], mode: 'exact' | 'folded' = 'exact') => {
      let f = 0, t = 0;
      for (const s of list) {
        const w = wordsFound(s.truth.replace(/\n/g, ' '), s.lines, mode);
        f += w.found;
        t += w.total;
      }
      return t === 0 ? 0 : f / t;
    };
    return { cer, recall, pageLines, rest };
  };
  for (const cond of conditions) {
    const cells = candidates.map((c) => {
      const ss = results[c]!.samples.filter((s) => s.condition === cond);
      const { cer, recall } = summary(ss);
      return `${pct(cer(ss))} / ${pct(recall(ss))} / ${pct(recall(ss, 'folded'))}`;
    });
    rows.push(`| ${cond} | ${cells.join(' | ')} |`);
  }
  const overall = candidates.map((c) => {
    const ss = results[c]!.samples.filter((s) => s.condition !== 'page.png');
    const { cer, recall } = summary(ss);
    return `**${pct(cer(ss))} / ${pct(recall(ss))} / ${pct(recall(ss, 'folded'))}**`;
  });
  rows.push(`| all rendered photos | ${overall.join(' | ')} |`);
  const cost: string[] = ['| | CPU-ms per photo (median) | wall-ms per photo (median) | words/s | peak RSS |', '|---|---|---|---|---|'];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  for (const c of candidates) {
    const ss = results[c]!.samples;
    const words = ss.reduce((a, s) => a + s.truth.split(/\s+/).length, 0);
    const wall = ss.reduce((a, s) => a + s.wallMs, 0) / 1000;
    cost.push(`| ${c} | ${fmt(median(ss.map((s) => s.cpuMs)))} | ${fmt(median(ss.map((s) => s.wallMs)))} | ${fmt(words / wall, 1)} | ${fmt(results[c]!.maxRssMb)} MB |`);
  }
  cost.push(`| CLIP ViT-B/32 image encode (decode + preprocess + encode, batch 8) | ${fmt(clip.cpuMsPerPhoto)} (encode alone ${fmt(clip.encodeCpuMsPerPhoto)}) | ${fmt(clip.wallMsPerPhoto)} | — | ${fmt(clip.maxRssMb)} MB |`);
  const text = [...rows, '', ...cost].join('\n');
  console.log(`\n${text}`);
  writeFileSync(join(OUT, 'ocr.md'), `${text}\n`);
  console.log(`\nwritten to ${join(OUT, 'ocr.md')}`);
}

/** page.png: CER of the whole page, lines joined, against the page's text. */
function pageCer(s: Sample): number {
  return characterErrorRate(PAGE_TRUTH.join(' '), [s.lines.join(' ')]);
}

await main();
