/**
 * npm run bench:duplicates — duplicate finding, two ways:
 *
 * 1. Quality on a generated set: photos from ../shared/photos/labeled, each "source" with seven made copies
 *    (resized to half, JPEG at quality 90/60/30, cropped by 10%, turned 90°, colour-shifted) beside unrelated
 *    photos, indexed with the self-built tiny model through the real library; precision and recall of the
 *    groups per transform at several thresholds, and with rotations on. The tiny model has RANDOM weights:
 *    these figures exercise the code path (a random ViT still maps a re-save close to its original, a crop
 *    or a turn less so); the figures that matter need a real CLIP model.
 * 2. Speed at 100k: 512-d clustered vectors with planted near-duplicate families (and planted near misses
 *    just over the threshold) in a real SQLite library and the real HNSW index (built by the index manager's
 *    worker), then every group found; time, and recall/precision against what was planted.
 *
 * Env: BENCH_N (default 100000), BENCH_SKIP_QUALITY=1, BENCH_SKIP_SPEED=1.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { IndexManager } from '../src/index/index-manager.js';
import { Library } from '../src/library/library.js';
import { findDuplicates, type DuplicatesReport } from '../src/search/duplicate-groups.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { indexFiles, tinyModel } from '../test/helpers/library-fixture.js';
import { sharedPath } from '../test/helpers/shared.js';
import { addIndexedImages, clusteredVectors, gaussian, openTestLibrary } from '../test/helpers/store-fixtures.js';

const THRESHOLDS = [0.005, 0.01, 0.02, 0.05];
const TRANSFORMS: Record<string, (src: string, to: string) => Promise<unknown>> = {
  'resize 50%': async (src, to) => {
    const { width } = await sharp(src).metadata();
    return sharp(src).resize({ width: Math.round(width! / 2) }).webp({ quality: 90 }).toFile(to);
  },
  'JPEG q90': (src, to) => sharp(src).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toFile(to),
  'JPEG q60': (src, to) => sharp(src).flatten({ background: '#ffffff' }).jpeg({ quality: 60 }).toFile(to),
  'JPEG q30': (src, to) => sharp(src).flatten({ background: '#ffffff' }).jpeg({ quality: 30 }).toFile(to),
  'crop 10%': async (src, to) => {
    const { width, height } = await sharp(src).metadata();
    const dx = Math.round(width! * 0.05);
    const dy = Math.round(height! * 0.05);
    return sharp(src).extract({ left: dx, top: dy, width: width! - 2 * dx, height: height! - 2 * dy }).webp({ quality: 90 }).toFile(to);
  },
  'rotate 90°': (src, to) => sharp(src).rotate(90).webp({ quality: 90 }).toFile(to),
  'colour shift': (src, to) => sharp(src).modulate({ hue: 25, saturation: 1.15, brightness: 1.05 }).webp({ quality: 90 }).toFile(to),
};

interface Member {
  family: number | null;
  transform: string | null;
}

function quality(report: DuplicatesReport, members: Map<number, Member>) {
  const groupOf = new Map<number, number>();
  report.groups.forEach((g, gi) => g.photos.forEach((p) => groupOf.set(p.id, gi)));
  const rows: Record<string, { recall: number; precision: number }> = {};
  for (const t of Object.keys(TRANSFORMS)) {
    let copies = 0;
    let found = 0;
    let mates = 0;
    let rightMates = 0;
    for (const [id, m] of members) {
      if (m.transform !== t) continue;
      copies++;
      const g = groupOf.get(id);
      if (g === undefined) continue;
      const others = report.groups[g]!.photos.filter((p) => p.id !== id);
      const right = others.filter((p) => members.get(p.id)?.family === m.family);
      if (right.some((p) => members.get(p.id)?.transform === null)) found++;
      mates += others.length;
      rightMates += right.length;
    }
    rows[t] = { recall: found / copies, precision: mates === 0 ? Number.NaN : rightMates / mates };
  }
  const unrelatedGrouped = [...members].filter(([id, m]) => m.family === null && groupOf.has(id)).length;
  return { rows, unrelatedGrouped };
}

async function qualityRun(): Promise<void> {
  const labeled = sharedPath('photos', 'labeled');
  if (!labeled) {
    console.log('quality: skipped (../shared/photos not found)');
    return;
  }
  const tmp = await mkdtemp(join(tmpdir(), 'clipdex-bench-dups-'));
  try {
    const root = join(tmp, 'photos');
    await mkdir(root, { recursive: true });
    const files: string[] = [];
    const info: Member[] = [];
    let family = 0;
    for (const folder of ['fishes', 'tools', 'renewable', 'others']) {
      const names = (await readdir(join(labeled, folder))).filter((n) => n.endsWith('.webp')).sort();
      for (const [i, name] of names.entries()) {
        const src = join(labeled, folder, name);
        const base = join(root, `${folder}-${name}`);
        await copyFile(src, base);
        files.push(base);
        // Every other photo is a source with seven copies; the rest are unrelated photos.
        if (i % 2 === 1) {
          info.push({ family: null, transform: null });
          continue;
        }
        info.push({ family, transform: null });
        for (const [t, make] of Object.entries(TRANSFORMS)) {
          const to = join(root, `${folder}-${name.replace('.webp', '')}-${t.replace(/[^a-z0-9]+/gi, '-')}.${t.startsWith('JPEG') ? 'jpg' : 'webp'}`);
          await make(src, to);
          files.push(to);
          info.push({ family, transform: t });
        }
        family++;
      }
    }
    const library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp, 11) });
    const ids = await indexFiles(library, root, files);
    const members = new Map(ids.map((id, i) => [id, info[i]!]));
    console.log(`\nquality: ${family} sources × ${Object.keys(TRANSFORMS).length} copies + ${info.filter((m) => m.family === null).length} unrelated photos = ${ids.length}, tiny model (random weights)`);
    const runs: [string, DuplicatesReport][] = [];
    for (const threshold of THRESHOLDS) runs.push([`${threshold}`, await findDuplicates(library, { threshold })]);
    runs.push(['0.01 + rotations', await findDuplicates(library, { threshold: 0.01, rotations: true })]);
    const header = `| transform | ${runs.map(([n]) => n).join(' | ')} |`;
    console.log(`\nrecall / precision per transform (threshold →)\n${header}\n|---|${runs.map(() => '---').join('|')}|`);
    const measured = runs.map(([, r]) => quality(r, members));
    for (const t of Object.keys(TRANSFORMS)) {
      console.log(`| ${t} | ${measured.map((m) => `${m.rows[t]!.recall.toFixed(2)} / ${Number.isNaN(m.rows[t]!.precision) ? '—' : m.rows[t]!.precision.toFixed(2)}`).join(' | ')} |`);
    }
    console.log(`| unrelated photos put in a group | ${measured.map((m) => m.unrelatedGrouped).join(' | ')} |`);
    console.log(`| groups | ${runs.map(([, r]) => r.groups.length).join(' | ')} |`);
    console.log(`| time | ${runs.map(([, r]) => `${r.tookMs} ms`).join(' | ')} |`);
    const rot = runs.at(-1)![1].rotationStats!;
    console.log(`rotations: ${rot.encodedPhotos} photos' turns encoded for ${rot.candidatePairs} candidate pairs (${rot.skippedPairs} skipped by the budget)`);
    await library.close();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function speedRun(): Promise<void> {
  const n = Number(process.env.BENCH_N ?? 100_000);
  const dim = 512;
  const KEY = 'bench-dups';
  const tmp = await mkdtemp(join(tmpdir(), 'clipdex-bench-dups-100k-'));
  try {
    let t = performance.now();
    const vectors = clusteredVectors(n, dim, { seed: 2025 });
    // Planted: families of 2–4 photos at cosine distance ~0.001–0.008 from a seed photo, and near misses at ~0.025.
    const r = seededRandom(7);
    const g = gaussian(r);
    const familyOf = new Int32Array(n).fill(-1);
    const missOf = new Int32Array(n).fill(-1);
    const perturb = (from: number, to: number, sigma: number) => {
      let s = 0;
      for (let j = 0; j < dim; j++) {
        const v = vectors[from * dim + j]! + sigma * g();
        vectors[to * dim + j] = v;
        s += v * v;
      }
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < dim; j++) vectors[to * dim + j]! *= inv;
    };
    let next = 0;
    const families = Math.round(n / 40);
    for (let f = 0; f < families; f++) {
      const seed = next++;
      familyOf[seed] = f;
      const size = 1 + Math.floor(r() * 3);
      for (let m = 0; m < size; m++) {
        const to = next++;
        perturb(seed, to, 0.002 + r() * 0.0035);
        familyOf[to] = f;
      }
    }
    const misses = Math.round(n / 100);
    for (let i = 0; i < misses; i++) {
      const a = next++;
      const b = next++;
      perturb(a, b, 0.0099);
      missOf[a] = i;
      missOf[b] = i;
    }
    const planted = next;
    console.log(`\nspeed: ${n} × ${dim} vectors, ${families} planted families (${planted - 2 * misses} photos), ${misses} planted near-miss pairs; generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const lib = openTestLibrary(join(tmp, 'data'));
    t = performance.now();
    const ids: number[] = [];
    for (let start = 0; start < n; start += 20_000) ids.push(...addIndexedImages(lib, KEY, vectors, dim, { start, count: Math.min(20_000, n - start) }));
    console.log(`SQLite: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    const index = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false });
    const h = index.health();
    console.log(`index: ${h.engine}, ${h.count} vectors, tuned ef ${h.ef}, built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const row = new Map(ids.map((id, i) => [id, i]));
    for (const [label, ef] of [['ef 32 (default)', 32], [`tuned ef ${h.ef}`, h.ef ?? 32]] as const) {
      let lastLine = 0;
      const report = await findDuplicates(
        { index, modelKey: KEY, db: lib.store.db, images: lib.images },
        {
          ef,
          onProgress: (p) => {
            if (Date.now() - lastLine > 10_000) {
              lastLine = Date.now();
              process.stderr.write(`  ${p.done}/${p.total}\n`);
            }
          },
        },
      );
      // Recall: planted pairs (family members) in one group; precision: grouped pairs that were planted.
      const groupOf = new Map<number, number>();
      report.groups.forEach((gr, gi) => gr.photos.forEach((p) => groupOf.set(row.get(p.id)!, gi)));
      let plantedPairs = 0;
      let foundPairs = 0;
      const byFamily = new Map<number, number[]>();
      for (let i = 0; i < planted; i++) if (familyOf[i]! >= 0) byFamily.set(familyOf[i]!, [...(byFamily.get(familyOf[i]!) ?? []), i]);
      for (const members of byFamily.values()) {
        for (let a = 0; a < members.length; a++) {
          for (let b = a + 1; b < members.length; b++) {
            plantedPairs++;
            const ga = groupOf.get(members[a]!);
            if (ga !== undefined && ga === groupOf.get(members[b]!)) foundPairs++;
          }
        }
      }
      let groupedPairs = 0;
      let rightPairs = 0;
      for (const gr of report.groups) {
        const rows = gr.photos.map((p) => row.get(p.id)!);
        for (let a = 0; a < rows.length; a++) {
          for (let b = a + 1; b < rows.length; b++) {
            groupedPairs++;
            if (familyOf[rows[a]!]! >= 0 && familyOf[rows[a]!] === familyOf[rows[b]!]) rightPairs++;
          }
        }
      }
      const missesGrouped = [...groupOf.keys()].filter((i) => missOf[i]! >= 0).length / 2;
      console.log(
        `${label}: ${(report.tookMs / 1000).toFixed(1)} s for ${report.photosChecked} photos, ${report.groups.length} groups; planted pairs found ${foundPairs}/${plantedPairs} (recall ${(foundPairs / plantedPairs).toFixed(4)}), grouped pairs planted ${rightPairs}/${groupedPairs} (precision ${(rightPairs / Math.max(1, groupedPairs)).toFixed(4)}), near misses grouped ${missesGrouped}/${misses}`,
      );
    }
    await index.close();
    lib.close();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

if (process.env.BENCH_SKIP_QUALITY !== '1') await qualityRun();
if (process.env.BENCH_SKIP_SPEED !== '1') await speedRun();
