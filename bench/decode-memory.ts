/**
 * npm run bench:decode-memory — what the single decode (issue 19) holds while many large photos are in flight.
 *
 * 48 files (24 generated 3000×2000 RGBA PNGs, each twice; 24 MB of decoded pixels apiece, no shrink-on-load)
 * through runEncodePipeline with a no-op encoder, 8 decoders, thumbnails on, OCR off. Prints the pipeline's
 * own accounting (pixels held at once, files + pixels held at once, photos rendered per render for want of
 * room, decodes) and process.memoryUsage's peak RSS and external memory, sampled every 20 ms.
 *
 * One configuration per process (RSS does not compare within one): `npx tsx bench/decode-memory.ts MODE BUDGET_MB
 * [DECODERS]`, MODE once | per-render. A budget far above the files (4096) is the merge that was reverted:
 * nothing then bounded the decoded pixels.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { runEncodePipeline, type PipelineModel } from '../src/ingest/encode-pipeline.js';
import { OPENAI_MEAN, OPENAI_STD } from '../src/model/manifest.js';

const [mode = 'once', budgetMb = '256', decoders = '8'] = process.argv.slice(2);
if (mode !== 'once' && mode !== 'per-render') throw new Error(`mode: once or per-render, not ${mode}`);
const dir = resolve('bench/out/decode-memory-pngs');
const paths = Array.from({ length: 24 }, (_, i) => join(dir, `large-${i}.png`));
if (!existsSync(paths.at(-1)!)) {
  await mkdir(dir, { recursive: true });
  const noise = { type: 'gaussian' as const, mean: 128, sigma: 30 };
  const base = await sharp({ create: { width: 3000, height: 2000, channels: 4, background: { r: 90, g: 120, b: 200, alpha: 0.8 }, noise } })
    .png({ compressionLevel: 1 })
    .toBuffer();
  for (const [i, p] of paths.entries()) await sharp(base).extend({ top: i, background: '#000' }).png({ compressionLevel: 1 }).toFile(p);
}
const model: PipelineModel = {
  image: { batchSize: 8, encode: async (_pixels, n) => Array.from({ length: n }, () => new Float32Array(512)) },
  spec: { preprocess: { size: 224, resizeMode: 'shortest', interpolation: 'bicubic', mean: OPENAI_MEAN, std: OPENAI_STD } },
};
const mb = (b: number) => Math.round(b / 2 ** 20);
let peakRss = 0;
let peakExternal = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakExternal = Math.max(peakExternal, m.external);
}, 20);
const rssBefore = process.memoryUsage().rss;
const t0 = performance.now();
const files = [...paths, ...paths].map((path) => ({ path }));
const s = await runEncodePipeline(files, () => {}, {
  model,
  decode: mode,
  decodeConcurrency: Number(decoders),
  readBudget: Number(budgetMb) * 2 ** 20,
  exif: false,
});
clearInterval(sampler);
console.log(
  JSON.stringify({
    mode,
    budgetMb: Number(budgetMb),
    decoders: Number(decoders),
    photos: files.length,
    ms: Math.round(performance.now() - t0),
    decodes: s.decodes,
    fallbacks: s.decodeFallbacks,
    maxDecodedMb: mb(s.maxDecodedBytes),
    maxHeldMb: mb(s.maxHeldBytes),
    rssBeforeMb: mb(rssBefore),
    peakRssMb: mb(peakRss),
    peakExternalMb: mb(peakExternal),
  }),
);
