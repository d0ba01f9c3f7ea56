/**
 * clipdex's own build of hnswlib (scripts/build-hnswlib.mjs, loaded by src/index/hnswlib-binding.ts):
 * when it is chosen, and that it is the same index as the stock build — files written by either are read
 * by the other with identical answers, and the patched loader still refuses a damaged file.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseHnswlibBuild, hnswlib, hnswlibBuild, type Hnswlib, type TunedManifest } from '../src/index/hnswlib-binding.js';
import { clusteredVectors } from './helpers/store-fixtures.js';

const manifest: TunedManifest = {
  hnswlibNode: '3.0.0',
  arch: 'x64',
  platform: 'linux',
  requires: ['avx2', 'fma'],
  cxxflags: ['-O3', '-mavx2', '-mfma'],
  patches: [],
  addon: 'build/Release/addon.node',
};
const machine = { installedVersion: '3.0.0', arch: 'x64', platform: 'linux', cpuFlags: new Set(['sse2', 'avx2', 'fma']) };

describe('choosing the build', () => {
  it('uses clipdex’s build only where it was made for this hnswlib-node, platform and CPU', () => {
    expect(chooseHnswlibBuild({ ...machine, manifest })).toEqual({ use: 'clipdex', reason: null });
    expect(chooseHnswlibBuild({ ...machine, manifest: null }).reason).toMatch(/not installed.*build:hnswlib/);
    expect(chooseHnswlibBuild({ ...machine, manifest, installedVersion: '3.1.0' }).reason).toMatch(/for hnswlib-node 3\.0\.0, 3\.1\.0 is installed/);
    expect(chooseHnswlibBuild({ ...machine, manifest, arch: 'arm64' }).reason).toMatch(/for linux-x64/);
    // A node_modules copied to an older CPU: the stock build, not SIGILL.
    expect(chooseHnswlibBuild({ ...machine, manifest, cpuFlags: new Set(['sse2', 'avx2']) })).toEqual({ use: 'stock', reason: expect.stringContaining('lacks fma') });
    expect(chooseHnswlibBuild({ ...machine, manifest, cpuFlags: null }).use).toBe('stock');
    expect(chooseHnswlibBuild({ ...machine, manifest: { ...manifest, requires: [] }, cpuFlags: null }).use).toBe('clipdex');
    expect(chooseHnswlibBuild({ ...machine, manifest, forceStock: true })).toEqual({ use: 'stock', reason: 'CLIPDEX_HNSWLIB=stock' });
  });
});

const tuned = hnswlibBuild.kind === 'clipdex';
describe.skipIf(!tuned)(`clipdex’s build against the stock one ${tuned ? '' : `(skipped: ${hnswlibBuild.reason})`}`, () => {
  const stock = createRequire(import.meta.url)('hnswlib-node') as Hnswlib;
  const tmp = mkdtempSync(join(tmpdir(), 'clipdex-hnswlib-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const DIM = 512;
  const N = 3000; // 3000 × 2.1 kB: past 2 MB, so the huge-page paths run
  const vectors = clusteredVectors(N, DIM, { seed: 11 });
  const queries = clusteredVectors(40, DIM, { seed: 12 });
  const row = (v: Float32Array, i: number) => Array.from(v.subarray(i * DIM, (i + 1) * DIM));

  function build(lib: Hnswlib, capacity: number): InstanceType<Hnswlib['HierarchicalNSW']> {
    const index = new lib.HierarchicalNSW('cosine', DIM);
    index.initIndex({ maxElements: capacity, m: 16, efConstruction: 100, randomSeed: 100 });
    for (let i = 0; i < N; i++) {
      // Grown past its first capacity, as HnswIndex does: the reallocated base layer must stay valid.
      if (index.getCurrentCount() === index.getMaxElements()) index.resizeIndex(index.getMaxElements() * 2);
      index.addPoint(row(vectors, i), i + 1);
    }
    index.setEf(64);
    return index;
  }

  type Answer = { neighbors: number[]; distances: number[] };
  const meanOverlap = (x: Answer[], y: Answer[]) => x.reduce((sum, r, q) => sum + r.neighbors.filter((n) => y[q]!.neighbors.includes(n)).length / 10, 0) / x.length;
  const sameAnswers = (x: Answer[], y: Answer[]) => x.filter((r, q) => r.neighbors.join() === y[q]!.neighbors.join()).length;

  const answers = (index: InstanceType<Hnswlib['HierarchicalNSW']>) => Array.from({ length: 40 }, (_, q) => index.searchKnn(row(queries, q), 10));

  it('is really another build: not the stock module object', () => {
    expect(hnswlib).not.toBe(stock);
    // The CPU features it reports are the ones the installed build was compiled for, and this CPU has each.
    const dir = join(dirname(createRequire(import.meta.url).resolve('hnswlib-node/package.json')), '..', '.clipdex-hnswlib');
    const installed = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as TunedManifest;
    expect(hnswlibBuild.features).toEqual(installed.requires);
    const flags = new Set(readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'))!.split(':')[1]!.trim().split(/\s+/));
    expect(hnswlibBuild.features.filter((f) => !flags.has(f))).toEqual([]);
  });

  it('builds the same graph from the same seed and answers the same, on files either one wrote', async () => {
    const ours = build(hnswlib, 1000);
    const theirs = build(stock, 1000);
    const a = answers(ours);
    const b = answers(theirs);
    // Other SIMD kernels round differently, so a near tie may break the other way while building: the same
    // answers, bar the odd neighbour, with the same distances.
    expect(meanOverlap(a, b)).toBeGreaterThan(0.95);
    for (let q = 0; q < a.length; q++) expect(Math.abs(a[q]!.distances[0]! - b[q]!.distances[0]!)).toBeLessThan(1e-4);
    const oursFile = join(tmp, 'ours.bin');
    const theirsFile = join(tmp, 'theirs.bin');
    await ours.writeIndex(oursFile);
    await theirs.writeIndex(theirsFile);
    expect(statSync(oursFile).size).toBe(statSync(theirsFile).size);

    const readByStock = new stock.HierarchicalNSW('cosine', DIM);
    await readByStock.readIndex(oursFile);
    readByStock.setEf(64);
    const readByOurs = new hnswlib.HierarchicalNSW('cosine', DIM);
    await readByOurs.readIndex(theirsFile);
    readByOurs.setEf(64);
    // The same graph searched by the other build: the same answers.
    expect(sameAnswers(answers(readByStock), a)).toBeGreaterThanOrEqual(39);
    expect(sameAnswers(answers(readByOurs), b)).toBeGreaterThanOrEqual(39);
    expect(readByOurs.getCurrentCount()).toBe(N);
  });

  it('takes a Float32Array as well as an array, with the same answers and the same checks', () => {
    expect(hnswlibBuild.float32Input).toBe(true);
    const index = build(hnswlib, N);
    const typed = (v: Float32Array) => v as unknown as number[];
    for (let q = 0; q < 10; q++) {
      const query = queries.subarray(q * DIM, (q + 1) * DIM);
      expect(index.searchKnn(typed(query), 10)).toEqual(index.searchKnn(Array.from(query), 10));
    }
    // A view into a larger buffer is read from its own offset.
    const offsetView = new Float32Array(vectors.buffer, vectors.byteOffset + 5 * DIM * 4, DIM);
    expect(index.searchKnn(typed(offsetView), 1).neighbors).toEqual([6]);
    expect(() => index.searchKnn(typed(new Float32Array(DIM - 1)), 10)).toThrow(/length/);
    expect(() => index.searchKnn(new Float64Array(DIM) as unknown as number[], 10)).toThrow(/Array/);
    index.resizeIndex(N + 1);
    index.addPoint(typed(queries.subarray(0, DIM)), 999_999);
    expect(index.searchKnn(typed(queries.subarray(0, DIM)), 1).neighbors).toEqual([999_999]);
  });

  it('its patched loader still refuses a truncated or extended file', async () => {
    const file = join(tmp, 'damaged.bin');
    const index = build(hnswlib, 4000);
    await index.writeIndex(file);
    const size = statSync(file).size;
    truncateSync(file, size - 100);
    await expect(new hnswlib.HierarchicalNSW('cosine', DIM).readIndex(file)).rejects.toThrow(/corrupted|unsupported|read/i);
    await index.writeIndex(file);
    appendFileSync(file, Buffer.alloc(64, 7));
    await expect(new hnswlib.HierarchicalNSW('cosine', DIM).readIndex(file)).rejects.toThrow(/corrupted|unsupported/i);
  });
});
