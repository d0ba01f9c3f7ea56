/**
 * The honest verdict (issue 17): the same labels give the same split and the same trained version in any
 * library, whatever order indexing gave the photos their ids.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { AdapterService, type TrainResult } from '../src/train/adapter-service.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const labeled = sharedPath('photos', 'labeled');
const FOLDERS = ['fishes', 'tools', 'renewable', 'others'];

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const rand = seededRandom(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe.skipIf(!labeled)(`the same labels in two libraries ${labeled ? '' : NEEDS_SHARED}`, () => {
  let dir: string;
  const libraries: Library[] = [];
  const results: TrainResult[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-verdict-'));
    const model = await tinyModel(dir);
    // 39 photos, 24 of them labeled (6 per folder): the case of the issue.
    const photos = FOLDERS.flatMap((f) => readdirSync(join(labeled!, f)).filter((n) => n.endsWith('.webp')).sort().slice(0, f === 'others' ? 9 : 10).map((n) => join(labeled!, f, n)));
    const labels = FOLDERS.flatMap((f) => photos.filter((p) => p.includes(`/${f}/`)).slice(0, 6).map((p) => ({ path: p, caption: `a photo of ${f}` })));
    for (const [k, order] of [photos, shuffled(photos, 5)].entries()) {
      const library = await Library.open({ dataDir: join(dir, `data-${k}`), model, cacheDir: join(dir, 'cache') });
      libraries.push(library);
      // One photo at a time in this order: ids follow it, as they follow the order parallel indexing finished.
      const idOf = new Map<string, number>();
      for (const p of order) idOf.set(p, (await indexFiles(library, labeled!, [p]))[0]!);
      for (const l of k === 0 ? labels : shuffled(labels, 9)) library.pairs.addUnique(idOf.get(l.path)!, l.caption);
      results.push(await new AdapterService(library).train({ seed: 1 }));
    }
  }, 180_000);

  afterAll(async () => {
    for (const l of libraries) await l.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds out the same photos (by content) in both', () => {
    const heldOut = (l: Library) => l.pairs.list().filter((p) => p.split !== 'train').map((p) => p.contentHash).sort();
    expect(heldOut(libraries[1]!)).toEqual(heldOut(libraries[0]!));
  });

  it('trains the same version in both, bit for bit', () => {
    const [a, b] = results as [TrainResult, TrainResult];
    expect(b.outcome.blend).toBe(a.outcome.blend);
    expect(b.outcome.after).toEqual(a.outcome.after);
    expect(b.outcome.verdict).toBe(a.outcome.verdict);
    const w = (r: TrainResult, l: Library) => Buffer.from(l.adapters.get(r.adapter.id)!.weights);
    expect(w(b, libraries[1]!).equals(w(a, libraries[0]!))).toBe(true);
  });
});
