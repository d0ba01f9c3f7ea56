import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AdaptersRepo } from '../src/store/adapters-repo.js';
import { ImageFilterQueries } from '../src/store/image-filter.js';
import { IndexChangesRepo } from '../src/store/index-changes-repo.js';
import { PairsRepo } from '../src/store/pairs-repo.js';
import { blobToVector, vectorToBlob } from '../src/store/vector-blob.js';
import { storeBackends, tempLibraryDir, type TestLibrary } from './helpers/store-fixtures.js';

const vec = (...xs: number[]) => Float32Array.from(xs);

describe('vector blobs', () => {
  it('round-trip a Float32Array that is a view at an odd offset of a larger buffer', () => {
    const backing = new Float32Array([9, 9, 1.5, -2.25, 3e-8, 9]);
    const view = backing.subarray(2, 5);
    const blob = vectorToBlob(view);
    expect(blob.byteLength).toBe(12);
    // A Buffer sliced from a pool at a byte offset that is not a multiple of 4.
    const unaligned = Buffer.concat([Buffer.from([7]), blob]).subarray(1);
    expect(Array.from(blobToVector(unaligned))).toEqual(Array.from(view));
    expect(() => blobToVector(unaligned, 4)).toThrow(expect.objectContaining({ code: 'DIMENSION_MISMATCH' }));
    expect(() => blobToVector(Buffer.alloc(7))).toThrow(expect.objectContaining({ code: 'DATABASE_INVALID' }));
  });
});

// Every repository behaviour below holds on both backends (issue 14): the same code, the same answers.
describe.each(storeBackends())('on $name', (backend) => {
  let lib: TestLibrary;
  let cleanup: () => void;
  beforeAll(() => backend.start(), 90_000);
  afterAll(() => backend.stop());
  beforeEach(() => {
    const t = tempLibraryDir();
    cleanup = t.cleanup;
    lib = backend.open(t.dir);
  });
  afterEach(() => {
    lib.close();
    cleanup();
  });

  describe('roots and images', () => {
    it('adds roots idempotently and cascades their removal to images', () => {
      const a = lib.roots.add('/photos');
      expect(lib.roots.add('/photos').id).toBe(a.id);
      expect(lib.roots.list().map((r) => r.path)).toEqual(['/photos']);
      lib.images.upsert({ rootId: a.id, path: '/photos/x.jpg', size: 1, mtimeMs: 2.5 });
      expect(lib.roots.setState(a.id, 'offline')).toBe(true);
      expect(lib.roots.get(a.id)!.state).toBe('offline');
      lib.roots.remove(a.id);
      expect(lib.images.getByPath('/photos/x.jpg')).toBeUndefined();
    });

    it('upserts by path keeping the id, stores EXIF fields, and clears errors when the status moves on', () => {
      const root = lib.roots.add('/p');
      const first = lib.images.upsert({ rootId: root.id, path: '/p/a.heic', size: 10, mtimeMs: 1234.5, status: 'error', errorCode: 'DECODE_FAILED', errorMessage: 'bad' });
      const second = lib.images.upsert({
        rootId: root.id,
        path: '/p/a.heic',
        size: 11,
        mtimeMs: 1300.25,
        contentHash: 'abc',
        width: 4032,
        height: 3024,
        format: 'heic',
        takenAt: 1_600_000_000_000,
        cameraMake: 'Apple',
        cameraModel: 'iPhone 12',
        status: 'indexed',
      });
      expect(second.id).toBe(first.id);
      expect(second).toMatchObject({ size: 11, mtimeMs: 1300.25, width: 4032, takenAt: 1_600_000_000_000, cameraModel: 'iPhone 12', status: 'indexed', errorCode: null });
      lib.images.setStatus(first.id, 'error', { code: 'DECODE_FAILED', message: 'truncated' });
      expect(lib.images.get(first.id)).toMatchObject({ status: 'error', errorCode: 'DECODE_FAILED', errorMessage: 'truncated' });
      lib.images.setStatus(first.id, 'pending');
      expect(lib.images.get(first.id)).toMatchObject({ status: 'pending', errorCode: null, errorMessage: null });
      expect(lib.images.countByStatus()).toEqual({ pending: 1, indexed: 0, error: 0, offline: 0 });
      expect(() => lib.images.setStatus(first.id, 'done' as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    });

    it('a renamed file keeps its id; duplicates are found by content hash', () => {
      const root = lib.roots.add('/p');
      const a = lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'same' });
      const b = lib.images.upsert({ rootId: root.id, path: '/p/b.jpg', size: 1, mtimeMs: 1, contentHash: 'same' });
      expect(lib.images.rename(a.id, '/p/sub/a.jpg', root.id)).toBe(true);
      expect(lib.images.getByPath('/p/sub/a.jpg')!.id).toBe(a.id);
      expect(lib.images.findByContentHash('same').map((i) => i.id)).toEqual([a.id, b.id]);
    });

    it('pages through images by status', () => {
      const root = lib.roots.add('/p');
      for (let i = 0; i < 5; i++) lib.images.upsert({ rootId: root.id, path: `/p/${i}.jpg`, size: 1, mtimeMs: 1 });
      const page1 = lib.images.listByStatus('pending', 2);
      const page2 = lib.images.listByStatus('pending', 10, page1.at(-1)!.id);
      expect(page1).toHaveLength(2);
      expect(page2).toHaveLength(3);
      expect(new Set([...page1, ...page2].map((i) => i.id)).size).toBe(5);
    });
  });

  describe('embeddings', () => {
    it('are shared by content: two paths, one row; a vector comes back exactly', () => {
      const root = lib.roots.add('/p');
      const v = vec(0.6, -0.8, 0, 0.125);
      lib.embeddings.put('hash1', 'm', v);
      const a = lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'hash1' });
      const b = lib.images.upsert({ rootId: root.id, path: '/p/copy.jpg', size: 1, mtimeMs: 1, contentHash: 'hash1' });
      expect(lib.embeddings.count('m')).toBe(1);
      expect(Array.from(lib.embeddings.forImage(a.id, 'm')!)).toEqual(Array.from(v));
      expect(Array.from(lib.embeddings.forImage(b.id, 'm')!)).toEqual(Array.from(v));
      expect(lib.embeddings.has('hash1', 'm')).toBe(true);
      expect(lib.embeddings.get('hash1', 'other')).toBeUndefined();
      // Replacing keeps one row.
      lib.embeddings.put('hash1', 'm', vec(1, 0, 0, 0));
      expect(lib.embeddings.count('m')).toBe(1);
      expect(Array.from(lib.embeddings.get('hash1', 'm')!)).toEqual([1, 0, 0, 0]);
    });

    it('refuses a second dimension for a model key, non-finite values, and non-Float32Array input', () => {
      lib.embeddings.put('h', 'm', vec(1, 0, 0));
      expect(() => lib.embeddings.put('h2', 'm', vec(1, 0))).toThrow(expect.objectContaining({ code: 'DIMENSION_MISMATCH' }));
      expect(() => lib.embeddings.put('h3', 'm', vec(1, Number.NaN, 0))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      expect(() => lib.embeddings.put('h4', 'm', [1, 0, 0] as unknown as Float32Array)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      expect(lib.embeddings.models()).toEqual([{ modelKey: 'm', dim: 3, count: 1 }]);
    });

    it('removes orphans (no image has the content any more) and whole models', () => {
      const root = lib.roots.add('/p');
      lib.embeddings.put('kept', 'm', vec(1, 0));
      lib.embeddings.put('gone', 'm', vec(0, 1));
      lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'kept' });
      expect(lib.embeddings.removeOrphans()).toBe(1);
      expect(lib.embeddings.has('gone', 'm')).toBe(false);
      expect(lib.embeddings.removeModel('m')).toBe(true);
      expect(lib.embeddings.count('m')).toBe(0);
      // The key can come back with another dimension once removed.
      lib.embeddings.put('kept', 'm', vec(1, 0, 0, 0));
      expect(lib.embeddings.modelDim('m')).toBe(4);
    });
  });

  describe('labeled pairs and adapters', () => {
    it('pairs need an existing image and a caption, and outlive their image row (kept by content)', () => {
      const pairs = new PairsRepo(lib.store.db);
      const root = lib.roots.add('/p');
      const img = lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'h-a', status: 'indexed' });
      const p = pairs.add(img.id, "  grandma's garden ", 'train');
      expect(p.caption).toBe("grandma's garden");
      pairs.add(img.id, 'roses', 'val');
      expect(pairs.count()).toEqual({ train: 1, val: 1 });
      expect(pairs.list('val').map((x) => x.caption)).toEqual(['roses']);
      expect(() => pairs.add(img.id, '   ', 'train')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      expect(() => pairs.add(999, 'x', 'train')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      lib.images.remove(img.id);
      expect(pairs.list().map((x) => [x.caption, x.imageId, x.contentHash, x.lastPath, x.missingSince !== null])).toEqual([
        ["grandma's garden", null, 'h-a', '/p/a.jpg', true],
        ['roses', null, 'h-a', '/p/a.jpg', true],
      ]);
      expect(pairs.page({}, 10).map((x) => x.photo)).toEqual(['missing', 'missing']);
      // The same content under another path and row: both labels attach to it.
      const again = lib.images.upsert({ rootId: root.id, path: '/p/moved/a.jpg', size: 1, mtimeMs: 2, contentHash: 'h-a', status: 'indexed' });
      expect(pairs.page({}, 10).map((x) => [x.imageId, x.path, x.photo, x.missingSince])).toEqual([
        [again.id, '/p/moved/a.jpg', 'ok', null],
        [again.id, '/p/moved/a.jpg', 'ok', null],
      ]);
    });

    it('adapters get increasing versions per model and at most one is active, enforced by the database', () => {
      const adapters = new AdaptersRepo(lib.store.db);
      const w = new Uint8Array([1, 2, 3, 4]);
      const a1 = adapters.add('m', w, { recallAt5: 0.5 });
      const a2 = adapters.add('m', w.subarray(1), { recallAt5: 0.7 });
      const other = adapters.add('n', w);
      expect([a1.version, a2.version, other.version]).toEqual([1, 2, 1]);
      expect(Array.from(adapters.get(a2.id)!.weights)).toEqual([2, 3, 4]);
      adapters.activate(a1.id);
      adapters.activate(a2.id);
      adapters.activate(other.id);
      expect(adapters.active('m')!.id).toBe(a2.id);
      expect(adapters.active('m')!.metrics).toEqual({ recallAt5: 0.7 });
      expect(adapters.list('m').map((a) => a.active)).toEqual([false, true]);
      // Even a writer that bypasses the repository cannot make a second active version.
      expect(() => lib.store.db.prepare('UPDATE adapters SET active = 1 WHERE id = ?').run(a1.id)).toThrow(/UNIQUE|unique constraint/);
      expect(adapters.deactivate('m')).toBe(true);
      expect(adapters.active('m')).toBeUndefined();
    });
  });

  describe('index change log (written by triggers in the writer\u2019s transaction)', () => {
    function setup() {
      const log = new IndexChangesRepo(lib.store.db);
      log.register('m');
      const root = lib.roots.add('/p');
      return { log, root };
    }
    const changed = (log: IndexChangesRepo, after: number) =>
      log.changedSince('m', after, log.maxSeq()).map((c) => [c.imageId, c.vector ? Array.from(blobToVector(c.vector)) : null]);

    it('logs membership changes for registered keys only, and replay reads the current state', () => {
      const { log, root } = setup();
      lib.embeddings.put('h1', 'm', vec(1, 0));
      lib.embeddings.put('h1', 'unregistered', vec(0, 1));
      let seq = log.maxSeq();
      const img = lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'h1', status: 'indexed' });
      expect(changed(log, seq)).toEqual([[img.id, [1, 0]]]);
      expect(log.pendingCount('unregistered', 0)).toBe(0);

      seq = log.maxSeq();
      lib.images.setStatus(img.id, 'offline');
      expect(changed(log, seq)).toEqual([[img.id, null]]);

      seq = log.maxSeq();
      lib.images.setStatus(img.id, 'indexed');
      lib.embeddings.put('h1', 'm', vec(0.5, 0.5)); // the vector itself changes
      expect(changed(log, seq)).toEqual([[img.id, [0.5, 0.5]]]); // one entry per id, latest state

      seq = log.maxSeq();
      lib.images.rename(img.id, '/p/b.jpg', root.id); // a rename changes nothing the index holds
      expect(log.maxSeq()).toBe(seq);

      lib.roots.remove(root.id); // cascade delete of the image
      expect(changed(log, seq)).toEqual([[img.id, null]]);
    });

    it('an embedding arriving for content two files share adds both; removing it deletes both', () => {
      const { log, root } = setup();
      const a = lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'dup', status: 'indexed' });
      const b = lib.images.upsert({ rootId: root.id, path: '/p/b.jpg', size: 1, mtimeMs: 1, contentHash: 'dup', status: 'indexed' });
      let seq = log.maxSeq();
      lib.embeddings.put('dup', 'm', vec(0, 1));
      expect(changed(log, seq)).toEqual([
        [a.id, [0, 1]],
        [b.id, [0, 1]],
      ]);
      expect(log.memberCount('m')).toBe(2);
      seq = log.maxSeq();
      lib.embeddings.remove('dup', 'm');
      expect(changed(log, seq)).toEqual([
        [a.id, null],
        [b.id, null],
      ]);
    });

    it('a write that rolls back leaves no log rows; pruning records how far the log is gone', () => {
      const { log, root } = setup();
      lib.embeddings.put('h', 'm', vec(1, 0));
      const seq = log.maxSeq();
      expect(() =>
        lib.store.db.transaction(() => {
          lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'h', status: 'indexed' });
          throw new Error('ingest failed halfway');
        })(),
      ).toThrow('halfway');
      expect(log.pendingCount('m', seq)).toBe(0);
      lib.images.upsert({ rootId: root.id, path: '/p/a.jpg', size: 1, mtimeMs: 1, contentHash: 'h', status: 'indexed' });
      const top = log.maxSeq();
      expect(log.prune('m', top)).toBeGreaterThan(0);
      expect(log.pendingCount('m', 0)).toBe(0);
      expect(log.tracked('m')!.prunedThrough).toBe(top);
      expect(log.maxSeq()).toBe(top); // seq numbers are never reused after pruning
    });
  });

  describe('filters', () => {
    it('folder prefix, capture-time range and formats resolve to exactly the matching members', () => {
      const log = new IndexChangesRepo(lib.store.db);
      const filters = new ImageFilterQueries(lib.store.db);
      const root = lib.roots.add('/lib');
      const files = [
        { path: '/lib/2020/a.jpg', takenAt: 1000, format: 'jpeg' },
        { path: '/lib/2020/b.png', takenAt: 2000, format: 'png' },
        { path: '/lib/2020-extra/c.jpg', takenAt: 3000, format: 'jpeg' }, // shares the prefix "2020" but not the folder
        { path: '/lib/2021/d.HEIC', takenAt: null, format: 'HEIC' },
        { path: '/lib/2020/sub/e.jpg', takenAt: 2500, format: 'jpeg' },
        { path: '/lib/2020/f.jpg', takenAt: 1500, format: 'jpeg', status: 'pending' as const }, // not a member
      ];
      const ids = new Map<string, number>();
      files.forEach((f, i) => {
        lib.embeddings.put(`h${i}`, 'm', vec(i, 1));
        ids.set(f.path, lib.images.upsert({ rootId: root.id, path: f.path, size: 1, mtimeMs: 1, contentHash: `h${i}`, takenAt: f.takenAt, format: f.format, status: f.status ?? 'indexed' }).id);
      });
      const pick = (...paths: string[]) => paths.map((p) => ids.get(p)!).sort((a, b) => a - b);
      const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
      expect(sorted(filters.ids('m', { folder: '/lib/2020' }))).toEqual(pick('/lib/2020/a.jpg', '/lib/2020/b.png', '/lib/2020/sub/e.jpg'));
      expect(sorted(filters.ids('m', { folder: '/lib/2020/' }))).toEqual(sorted(filters.ids('m', { folder: '/lib/2020' })));
      expect(sorted(filters.ids('m', { takenFrom: 1500, takenTo: 3000 }))).toEqual(pick('/lib/2020/b.png', '/lib/2020/sub/e.jpg'));
      expect(sorted(filters.ids('m', { formats: ['heic', 'PNG'] }))).toEqual(pick('/lib/2020/b.png', '/lib/2021/d.HEIC'));
      expect(sorted(filters.ids('m', { folder: '/lib/2020', formats: ['jpeg'], takenTo: 2600 }))).toEqual(pick('/lib/2020/a.jpg', '/lib/2020/sub/e.jpg'));
      expect(filters.count('m', { folder: '/lib' })).toBe(5);
      expect(filters.count('m', { folder: '/nowhere' })).toBe(0);
      expect(filters.members('m', { formats: ['png'] }).map((r) => Array.from(blobToVector(r.vector)))).toEqual([[1, 1]]);
      expect(log.memberCount('m')).toBe(5);
      expect(() => filters.ids('m', { takenFrom: Number.NaN })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      expect(() => filters.ids('m', { folder: '' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    });
  });
});
