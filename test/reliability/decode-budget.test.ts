/**
 * Bounded memory in the ingest pipeline (issue 11): each decoder reads a whole file into memory to hash and
 * decode it, so CPU-count files of up to 1 GiB each could be held at once. A byte budget now bounds the sum:
 * first the semaphore on its own, then the real pipeline (self-built model, real files, sharp, ONNX Runtime)
 * over several large files.
 *
 * The pipeline's own figure (`stats.maxReadBytes`) is checked, and so is what can be seen from outside: the
 * `skip` callback runs after a file's bytes are read and hashed and before they are decoded, i.e. while they
 * are held, so the number of files inside it at once, times their size, is memory the budget must bound.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runEncodePipeline, type PipelineResult } from '../../src/ingest/encode-pipeline.js';
import { ClipModel } from '../../src/model/clip-model.js';
import { readModelDir } from '../../src/model/model-dir.js';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { ByteBudget } from '../../src/util/byte-budget.js';
import { seededRandom } from '../../src/util/seeded-random.js';
import { jpegBytes, sleep } from '../helpers/ingest-fixtures.js';

const MB = 1024 * 1024;
/** Lets pending promise callbacks run (grants happen synchronously in release; their awaiters a tick later). */
const ticks = () => new Promise<void>((r) => setImmediate(r));

describe('ByteBudget', () => {
  it('grants what fits at once and makes the rest wait for a release', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(40);
    const b = await budget.acquire(40);
    expect(budget.inUse).toBe(80);
    expect(budget.tryAcquire(40), 'tryAcquire past the budget').toBeNull();
    let granted = false;
    const c = budget.acquire(40).then((r) => {
      granted = true;
      return r;
    });
    await ticks();
    expect(granted, '40 more while 80 of 100 are held').toBe(false);
    expect(budget.waiting).toBe(1);
    a();
    const release = await c;
    expect(granted).toBe(true);
    expect(budget.inUse).toBe(80);
    a(); // a second release of the same reservation changes nothing
    expect(budget.inUse).toBe(80);
    b();
    release();
    expect(budget.inUse).toBe(0);
    expect(budget.peak).toBe(80);
  });

  it('runs a reservation larger than the whole budget alone, and nothing beside it', async () => {
    const budget = new ByteBudget(100);
    const small = await budget.acquire(30);
    let bigGranted = false;
    const big = budget.acquire(250).then((r) => {
      bigGranted = true;
      return r;
    });
    await ticks();
    expect(bigGranted, 'oversized while 30 are held').toBe(false);
    small();
    const releaseBig = await big;
    expect(budget.inUse).toBe(250);
    expect(budget.tryAcquire(1), 'anything beside the oversized one').toBeNull();
    let tinyGranted = false;
    const tiny = budget.acquire(1).then((r) => {
      tinyGranted = true;
      return r;
    });
    await ticks();
    expect(tinyGranted).toBe(false);
    releaseBig();
    (await tiny)();
    expect(tinyGranted).toBe(true);
    expect(budget.inUse).toBe(0);
  });

  it('serves waiters in order: a large one at the head is not overtaken by small ones that would fit', async () => {
    const budget = new ByteBudget(100);
    const held = await budget.acquire(60);
    const order: string[] = [];
    const big = budget.acquire(80).then((r) => {
      order.push('big');
      return r;
    });
    const small = budget.acquire(10).then((r) => {
      order.push('small');
      return r;
    });
    expect(budget.tryAcquire(10), 'a newcomer may not jump the queue either').toBeNull();
    await ticks();
    expect(order).toEqual([]);
    held();
    const releaseBig = await big;
    const releaseSmall = await small;
    expect(order).toEqual(['big', 'small']);
    releaseBig();
    releaseSmall();
  });

  it('an aborted wait holds nothing and lets the waiters behind it through', async () => {
    const budget = new ByteBudget(100);
    const held = await budget.acquire(90);
    const controller = new AbortController();
    const blocked = budget.acquire(50, controller.signal);
    let smallGranted = false;
    const small = budget.acquire(10).then((r) => {
      smallGranted = true;
      return r;
    });
    controller.abort(new Error('stopped'));
    await expect(blocked).rejects.toThrow('stopped');
    (await small)();
    expect(smallGranted).toBe(true);
    held();
    expect(budget.inUse).toBe(0);
    expect(budget.waiting).toBe(0);
    await expect(budget.acquire(1, controller.signal)).rejects.toThrow('stopped');
  });

  it('never holds more than its capacity under random concurrent use (unless one oversized runs alone)', async () => {
    const budget = new ByteBudget(1000);
    const rng = seededRandom(5);
    let worst = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        const bytes = Math.floor(rng() * (rng() < 0.05 ? 1500 : 400));
        await sleep(Math.floor(rng() * 5));
        const release = await budget.acquire(bytes);
        const inUse = budget.inUse;
        if (bytes <= 1000) worst = Math.max(worst, inUse);
        else expect(inUse, 'oversized ran beside something').toBe(bytes);
        await sleep(Math.floor(rng() * 3));
        release();
        done++;
      }),
    );
    expect(done).toBe(200);
    expect(worst).toBeLessThanOrEqual(1000);
    expect(worst, 'the budget was actually contended').toBeGreaterThan(600);
    expect(budget.inUse).toBe(0);
  });
});

describe('encode pipeline: bytes of files in flight', () => {
  let tmp: string;
  let model: ClipModel;
  /** A valid JPEG followed by padding: decodes in milliseconds, weighs `bytes` (its hash is its own). */
  const bigPhoto = async (name: string, seed: number, bytes: number) => {
    const jpeg = await jpegBytes(seed, 96, 72);
    const pad = Buffer.alloc(bytes - jpeg.length, seed & 0xff);
    const path = join(tmp, name);
    await writeFile(path, Buffer.concat([jpeg, pad]));
    return { path };
  };

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-decode-budget-'));
    const dir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 11 })).dir;
    model = await ClipModel.load(await readModelDir(dir), { providers: ['cpu'] });
  });
  afterAll(async () => {
    await model?.release();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('holds at most the budget in files however many decoders run, reads an oversized file alone, refuses one above the per-file cap', async () => {
    const BUDGET = 30 * MB;
    const files = [];
    for (let i = 0; i < 6; i++) files.push(await bigPhoto(`large-${i}.jpg`, 10 + i, 12 * MB));
    const oversized = await bigPhoto('oversized.jpg', 40, 40 * MB);
    const aboveCap = await bigPhoto('above-cap.jpg', 41, 50 * MB);
    const input = [...files.slice(0, 3), oversized, ...files.slice(3), aboveCap];

    // Inside `skip` a file's bytes are read and not yet decoded: held.
    const holding = new Map<string, number>();
    let worstHeld = 0;
    const heldBesideOversized: string[] = [];
    const results: PipelineResult<{ path: string }>[] = [];
    const stats = await runEncodePipeline(input, (r) => void results.push(...r), {
      model,
      decodeConcurrency: 6,
      batchSize: 4,
      maxFileBytes: 45 * MB,
      readBudget: BUDGET,
      skip: async (file, content) => {
        holding.set(file.path, content.size);
        const held = [...holding.values()].reduce((a, b) => a + b, 0);
        // The oversized file may exceed the budget, alone: checked apart.
        if (holding.has(oversized.path)) {
          if (holding.size > 1) heldBesideOversized.push([...holding.keys()].join(', '));
        } else worstHeld = Math.max(worstHeld, held);
        // Long enough for every other decoder to get its file read, were nothing stopping it.
        await sleep(150);
        holding.delete(file.path);
        return false;
      },
    });

    const byPath = new Map(results.map((r) => [r.file.path, r]));
    expect(results).toHaveLength(input.length);
    for (const f of [...files, oversized]) expect(byPath.get(f.path)?.status, f.path).toBe('encoded');
    const refused = byPath.get(aboveCap.path);
    expect(refused?.status).toBe('failed');
    if (refused?.status === 'failed') {
      expect(refused.error.code).toBe('IMAGE_TOO_LARGE');
      expect(refused.error.message).toContain(aboveCap.path);
    }

    expect(worstHeld, 'bytes of 12 MB files held at once, seen from skip').toBeLessThanOrEqual(BUDGET);
    expect(worstHeld, 'two 12 MB files fit and were read together').toBe(24 * MB);
    expect(heldBesideOversized, 'files held beside the 40 MB one').toEqual([]);
    // The pipeline's own account: the 40 MB file alone was the most; the refused one was never reserved.
    expect(stats.maxReadBytes).toBe(40 * MB);
  });
});
