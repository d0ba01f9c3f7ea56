/**
 * The ingest engine end to end on real parts: the self-built CLIP model, SQLite, the vector index,
 * chokidar, sharp. Watch scenarios share one running engine and run in order.
 */
import { execFile } from 'node:child_process';
import { appendFile, chmod, mkdir, mkdtemp, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../src/ingest/content-hash.js';
import { ThreadImageEncoder } from '../src/ingest/encoder-thread.js';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { IngestEvent } from '../src/ingest/ingest-events.js';
import { IngestStore } from '../src/ingest/ingest-store.js';
import type { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import sharp from 'sharp';
import { IS_ROOT, jpegBytes, sleep, waitFor, withoutRootPowers, writeJpeg } from './helpers/ingest-fixtures.js';
import { findsItself, imageFilesUnder, openLibrary, searchByFile, tinyJpeg } from './helpers/ingest-library.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const run = promisify(execFile);

/** What the vector index holds once it has applied SQLite's change log (searches apply it themselves). */
function indexContents(lib: Library): { ids: number[]; duplicated: number[] } {
  const { index } = lib.requireModel();
  index.sync();
  return index.contents();
}
let tmp: string;
let modelDir: string;
let counter = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-ingest-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 7 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function fresh(name: string): Promise<{ root: string; dataDir: string }> {
  const n = ++counter;
  const root = join(tmp, `${name}-${n}`);
  await mkdir(root, { recursive: true });
  return { root, dataDir: join(tmp, `data-${n}`) };
}

/**
 * Resolves once the engine has reported `n` distinct paths that `match` as indexed. It
 * fails only when none comes for `stallMs`: a loaded machine makes a big copy slow, and a fixed deadline
 * for the whole of it failed when another heavy test ran beside this one; a stuck engine still fails.
 */
function waitForIndexed(
  engine: IngestEngine,
  match: (path: string) => boolean,
  n: number,
  what: string,
  stallMs = 60_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const seen = new Set<string>();
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      clearTimeout(timer);
      off();
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        off();
        reject(new Error(`${what}: ${seen.size} of ${n}, and none for ${stallMs / 1000} s`));
      }, stallMs);
    };
    const off = engine.onEvent((e) => {
      if (e.type !== 'indexed' || !match(e.path) || seen.has(e.path)) return;
      seen.add(e.path);
      if (seen.size < n) arm();
      else {
        stop();
        resolve();
      }
    });
    arm();
  });
}

/** Fast settle times so the watch tests stay short; the defaults are for real disks. */
const FAST = { stableMs: 400, debounceMs: 50 } as const;

/** The bad files of ../shared/photos/edge, as its README lists them. */
const KNOWN_BAD = ['truncated.jpg', 'not-an-image.jpg', 'empty.png'];

describe.skipIf(!sharedPath('photos'))(`../shared/photos, edge cases included ${sharedPath('photos') ? '' : NEEDS_SHARED}`, () => {
  it('indexes every valid image once, records every bad file with its reason, and stays alive', async () => {
    const photos = sharedPath('photos')!;
    const { dataDir } = await fresh('shared');
    const lib = await openLibrary(dataDir, modelDir);
    const events: IngestEvent[] = [];
    const engine = await IngestEngine.start(lib, { roots: [photos], watch: false, onEvent: (e) => events.push(e) });
    try {
      await engine.idle();
      const files = imageFilesUnder(photos);
      const bad = files.filter((f) => KNOWN_BAD.includes(basename(f)));
      expect(bad).toHaveLength(KNOWN_BAD.length);
      const rows = lib.store.db.prepare('SELECT id, path, status, error_code AS code, error_message AS message FROM images').all() as {
        id: number; path: string; status: string; code: string | null; message: string | null;
      }[];
      // Exactly one row per file, and none for anything else.
      expect(rows.map((r) => r.path).sort()).toEqual(files);
      for (const r of rows) {
        if (bad.includes(r.path)) {
          expect(r.status, r.path).toBe('error');
          expect(r.code, r.path).toMatch(/^(DECODE_FAILED|NOT_AN_IMAGE|EMPTY_FILE)$/);
          expect(r.message, r.path).toContain(basename(r.path));
        } else {
          expect(r.status, `${r.path}: ${r.message}`).toBe('indexed');
        }
      }
      const status = engine.status();
      expect(status.counts).toEqual({ indexed: files.length - bad.length, pending: 0, failed: bad.length, offline: 0 });
      expect(status.progress.errors).toBe(bad.length);
      expect(events.filter((e) => e.type === 'error').map((e) => (e as { path: string }).path).sort()).toEqual(bad.sort());
      expect(events.some((e) => e.type === 'failure')).toBe(false);
      // Searchable, each by its own picture (a sample: embedding 140 files again would double the test).
      const indexed = rows.filter((r) => r.status === 'indexed');
      for (const r of indexed.filter((_, i) => i % 10 === 0)) expect(await findsItself(lib, r.path, r.id), r.path).toBe(true);
      expect(indexContents(lib).ids).toEqual(indexed.map((r) => r.id).sort((a, b) => a - b));
      // Capture date and camera kept (Dune.jpg and Storm.jpg carry camera EXIF).
      const withCamera = lib.store.db.prepare("SELECT count(*) AS n FROM images WHERE camera_make IS NOT NULL").get() as { n: number };
      expect(withCamera.n).toBeGreaterThan(0);
      // Thumbnails, keyed by content.
      for (const r of indexed.slice(0, 5)) {
        const hash = lib.images.get(r.id)!.contentHash!;
        expect(await lib.thumbnails.has(hash)).toBe(true);
      }
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});

describe('bad files', () => {
  it(`every kind is recorded with its reason, indexing goes on, and a file is retried only once it changes${IS_ROOT ? ' (as root: run with effective uid nobody)' : ''}`, async () => {
    const { root, dataDir } = await fresh('bad');
    // Readable and writable for the unprivileged user the test switches to when run as root.
    await chmod(tmp, 0o755);
    await chmod(root, 0o777);
    await mkdir(dataDir, { mode: 0o777 });
    await chmod(dataDir, 0o777);
    const p = (name: string) => join(root, name);
    await writeJpeg(p('good.jpg'), 500);
    await writeFile(p('jpeg-named.png'), await jpegBytes(501));
    const full = await jpegBytes(502, 200, 150);
    await writeFile(p('truncated.jpg'), full.subarray(0, full.length >> 1));
    await writeFile(p('text.jpg'), 'a shopping list, not a photo');
    await writeFile(p('empty.webp'), Buffer.alloc(0));
    await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#123' } }).png().toFile(p('bomb.png'));
    await writeJpeg(p('locked.jpg'), 503);
    await chmod(p('locked.jpg'), 0o000);
    await symlink('loop.jpg', p('loop.jpg'));
    const expected: Record<string, RegExp> = {
      'truncated.jpg': /^DECODE_FAILED$/,
      'text.jpg': /^NOT_AN_IMAGE$/,
      'empty.webp': /^EMPTY_FILE$/,
      'bomb.png': /^IMAGE_TOO_LARGE$/,
      'locked.jpg': /^FILE_UNREADABLE$/,
      'loop.jpg': /^FILE_UNREADABLE$/,
    };
    const runOnce = () =>
      withoutRootPowers(async () => {
        const lib = await openLibrary(dataDir, modelDir);
        const events: IngestEvent[] = [];
        const engine = await IngestEngine.start(lib, { roots: [root], watch: false, maxPixels: 2000 * 2000, onEvent: (e) => events.push(e) });
        try {
          await engine.idle();
          const rows = lib.store.db.prepare('SELECT path, status, error_code AS code, error_message AS message FROM images').all() as {
            path: string; status: string; code: string | null; message: string | null;
          }[];
          return { rows: new Map(rows.map((r) => [basename(r.path), r])), events, failures: events.filter((e) => e.type === 'failure') };
        } finally {
          await engine.close();
          await lib.close();
        }
      });

    const first = await runOnce();
    expect(first.failures).toEqual([]);
    expect(first.rows.get('good.jpg')?.status).toBe('indexed');
    expect(first.rows.get('jpeg-named.png')?.status).toBe('indexed');
    for (const [name, code] of Object.entries(expected)) {
      const r = first.rows.get(name);
      expect(r?.status, name).toBe('error');
      expect(r?.code, `${name}: ${r?.message}`).toMatch(code);
      expect(r?.message, name).toContain(name);
    }
    expect(first.rows.get('loop.jpg')?.message).toMatch(/loop/);
    expect(first.rows.size).toBe(2 + Object.keys(expected).length);

    // Unchanged bad files are not read again; a repaired one is.
    await writeFile(p('truncated.jpg'), full);
    const second = await runOnce();
    expect(second.events.filter((e) => e.type === 'error')).toEqual([]);
    expect(second.rows.get('truncated.jpg')?.status).toBe('indexed');
    expect(second.rows.get('text.jpg')?.status).toBe('error');
  });
});

describe('watching a folder', () => {
  let root: string;
  let lib: Library;
  let engine: IngestEngine;
  let encodeSpy: { mock: { calls: unknown[][] }; mockRestore(): void };
  const events: IngestEvent[] = [];
  const row = (path: string) => lib.images.getByPath(path);
  const encodedImages = () => encodeSpy.mock.calls.reduce((n: number, call) => n + (call[1] as number), 0);
  const embeddingCreatedAt = (hash: string) =>
    (lib.store.db.prepare('SELECT created_at AS t FROM embeddings WHERE content_hash = ?').get(hash) as { t: number } | undefined)?.t;

  beforeAll(async () => {
    const f = await fresh('watch');
    root = f.root;
    lib = await openLibrary(f.dataDir, modelDir);
    // Counts the engine's encoder calls (its thread); the test's own searches use the library's encoder.
    encodeSpy = vi.spyOn(ThreadImageEncoder.prototype, 'encode');
    engine = await IngestEngine.start(lib, { roots: [root], ...FAST, onEvent: (e) => events.push(e) });
    await engine.idle();
  });
  afterAll(async () => {
    encodeSpy?.mockRestore();
    await engine?.close();
    await lib?.close();
  });

  let id = 0;

  it('add: a new photo becomes searchable', async () => {
    const a = join(root, 'a.jpg');
    await writeJpeg(a, 1);
    const indexed = await waitFor(() => (row(a)?.status === 'indexed' ? row(a) : undefined), 'a.jpg indexed');
    id = indexed.id;
    expect(encodedImages()).toBe(1);
    expect(await findsItself(lib, a, id)).toBe(true);
  });

  it('modify: new content replaces the old under the same id', async () => {
    const a = join(root, 'a.jpg');
    const oldHash = row(a)!.contentHash!;
    const bytes = await jpegBytes(2);
    await writeFile(a, bytes);
    await waitFor(() => row(a)?.contentHash === sha256Hex(bytes), 'a.jpg re-encoded');
    expect(row(a)!.id).toBe(id);
    expect(row(a)!.status).toBe('indexed');
    expect(encodedImages()).toBe(2);
    expect(await findsItself(lib, a, id)).toBe(true);
    expect(oldHash).not.toBe(row(a)!.contentHash);
  });

  it('rename: the row keeps its id and embedding, and the encoder does not run', async () => {
    const a = join(root, 'a.jpg');
    const b = join(root, 'b.jpg');
    const hash = row(a)!.contentHash!;
    const createdAt = embeddingCreatedAt(hash);
    const before = encodedImages();
    await rename(a, b);
    await waitFor(() => row(b)?.id === id && !row(a), 'b.jpg renamed from a.jpg');
    expect(row(b)!.status).toBe('indexed');
    expect(encodedImages()).toBe(before);
    expect(embeddingCreatedAt(hash)).toBe(createdAt);
    expect(events).toContainEqual({ type: 'renamed', imageId: id, from: a, to: b });
    expect(await findsItself(lib, b, id)).toBe(true);
  });

  it('move between folders: same id, no encoding', async () => {
    const before = encodedImages();
    await mkdir(join(root, 'one'));
    await mkdir(join(root, 'two'));
    await sleep(200); // let the watcher pick the new folders up
    const b = join(root, 'b.jpg');
    const one = join(root, 'one', 'b.jpg');
    const two = join(root, 'two', 'b.jpg');
    await rename(b, one);
    await waitFor(() => row(one)?.id === id, 'moved into one/');
    await rename(one, two);
    await waitFor(() => row(two)?.id === id && !row(one), 'moved on into two/');
    expect(encodedImages()).toBe(before);
    expect(await findsItself(lib, two, id)).toBe(true);
  });

  it('delete: the row and its place in the index go', async () => {
    const two = join(root, 'two', 'b.jpg');
    await rm(two);
    await waitFor(() => !row(two), 'b.jpg removed');
    expect(indexContents(lib).ids).not.toContain(id);
    expect(events).toContainEqual({ type: 'removed', imageId: id, path: two });
  });

  it('delete a folder: everything under it goes', async () => {
    const dir = join(root, 'album');
    const paths = await Promise.all([0, 1, 2, 3, 4].map(async (i) => {
      const p = join(dir, 'nested', `p${i}.jpg`);
      await writeJpeg(p, 100 + i);
      return p;
    }));
    await waitFor(() => paths.every((p) => row(p)?.status === 'indexed'), 'album indexed');
    const ids = paths.map((p) => row(p)!.id);
    await rm(dir, { recursive: true });
    await waitFor(() => paths.every((p) => !row(p)), 'album removed');
    const inIndex = new Set(indexContents(lib).ids);
    expect(ids.filter((i) => inIndex.has(i))).toEqual([]);
  });

  it('a file written slowly (appended over 3 s) is indexed once, after it is complete', async () => {
    const slow = join(root, 'slow.jpg');
    const bytes = await jpegBytes(300, 400, 300);
    const chunks = 30;
    const per = Math.ceil(bytes.length / chunks);
    await writeFile(slow, bytes.subarray(0, per));
    for (let i = 1; i < chunks; i++) {
      await sleep(100);
      await appendFile(slow, bytes.subarray(i * per, (i + 1) * per));
    }
    const completedAt = Date.now();
    await waitFor(() => row(slow)?.status === 'indexed', 'slow.jpg indexed');
    expect(row(slow)!.contentHash).toBe(sha256Hex(bytes));
    expect(row(slow)!.size).toBe(bytes.length);
    const mine = events.filter((e) => 'path' in e && e.path === slow);
    expect(mine.map((e) => e.type)).toEqual(['indexed']);
    expect(row(slow)!.updatedAt).toBeGreaterThanOrEqual(completedAt);
  });

  it('copying 2,000 files at once: every one indexed and searchable', async () => {
    const staging = join(tmp, `staging-${++counter}`);
    await mkdir(staging);
    const n = 2000;
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: 100 }, async (_, k) => writeFile(join(staging, `g${i + k}.jpg`), await tinyJpeg(10_000 + i + k))));
    }
    const rowsBefore = lib.images.countByStatus().indexed;
    const bulkDir = join(root, 'bulk');
    const allIndexed = waitForIndexed(engine, (p) => p.startsWith(bulkDir + sep), n, '2,000 files indexed');
    // A separate process, as a user's copy would be.
    await run('cp', ['-r', staging, bulkDir]);
    await allIndexed;
    await engine.idle();
    expect(new IngestStore(lib.store.db).queueCount()).toBe(0);
    expect(lib.images.countByStatus().indexed).toBe(rowsBefore + n);
    const bulk = lib.store.db.prepare("SELECT id, path FROM images WHERE path LIKE ? AND status = 'indexed'").all(`${join(root, 'bulk')}/%`) as {
      id: number; path: string;
    }[];
    expect(bulk).toHaveLength(n);
    expect(indexContents(lib).duplicated).toEqual([]);
    for (const r of bulk.filter((_, i) => i % 400 === 0)) expect(await findsItself(lib, r.path, r.id), r.path).toBe(true);
    expect(engine.status().counts.failed).toBe(0);
    // Generous: the waits above fail on a stall, not on a slow machine (about 15 s alone, a minute beside a heavy test).
  }, 600_000);
});

describe('restart', () => {
  it('picks up what changed while it was not running: additions, edits, deletions, renames, moves, fixed files', async () => {
    const { root, dataDir } = await fresh('restart');
    const p = (name: string) => join(root, name);
    for (const [i, name] of ['keep.jpg', 'edit.jpg', 'gone.jpg', 'old-name.jpg', 'mover.jpg'].entries()) await writeJpeg(p(name), 200 + i);
    await writeFile(p('broken.jpg'), 'not a photo at all');
    await writeFile(p('still-broken.jpg'), 'not a photo either');
    let lib = await openLibrary(dataDir, modelDir);
    let engine = await IngestEngine.start(lib, { roots: [root], watch: false });
    await engine.idle();
    await engine.close();
    const before = new Map(lib.store.db.prepare('SELECT path, id FROM images').all().map((r) => [(r as { path: string }).path, (r as { id: number }).id]));
    expect(before.size).toBe(7);
    const goneHash = lib.images.getByPath(p('gone.jpg'))!.contentHash!;
    expect(await lib.thumbnails.has(goneHash)).toBe(true);
    expect(lib.images.getByPath(p('broken.jpg'))!.status).toBe('error');
    await lib.close();

    // While stopped.
    await writeJpeg(p('new.jpg'), 300);
    const edited = await jpegBytes(301);
    await writeFile(p('edit.jpg'), edited);
    await rm(p('gone.jpg'));
    await rename(p('old-name.jpg'), p('new-name.jpg'));
    await mkdir(p('sub'));
    await rename(p('mover.jpg'), p('sub/mover.jpg'));
    await writeJpeg(p('broken.jpg'), 302);

    lib = await openLibrary(dataDir, modelDir);
    const events: IngestEvent[] = [];
    // No retention of orphaned content: the deleted photo's embedding is checked to go at close.
    engine = await IngestEngine.start(lib, { onEvent: (e) => events.push(e), watch: false, orphanRetentionMs: 0 });
    try {
      await engine.idle();
      const row = (name: string) => lib.images.getByPath(p(name));
      expect(row('new.jpg')?.status).toBe('indexed');
      expect(row('edit.jpg')).toMatchObject({ id: before.get(p('edit.jpg')), status: 'indexed', contentHash: sha256Hex(edited) });
      expect(row('gone.jpg')).toBeUndefined();
      expect(row('old-name.jpg')).toBeUndefined();
      expect(row('new-name.jpg')).toMatchObject({ id: before.get(p('old-name.jpg')), status: 'indexed' });
      expect(row('sub/mover.jpg')).toMatchObject({ id: before.get(p('mover.jpg')), status: 'indexed' });
      expect(row('broken.jpg')).toMatchObject({ id: before.get(p('broken.jpg')), status: 'indexed' });
      expect(row('keep.jpg')).toMatchObject({ id: before.get(p('keep.jpg')), status: 'indexed' });
      // The unchanged bad file was not tried again.
      expect(row('still-broken.jpg')!.status).toBe('error');
      expect(events.filter((e) => e.type === 'error')).toEqual([]);
      const progress = engine.status().progress;
      expect({ encoded: progress.encoded, renamed: progress.renamed, removed: progress.removed }).toEqual({ encoded: 3, renamed: 2, removed: 1 });
      expect(await findsItself(lib, p('new-name.jpg'), row('new-name.jpg')!.id)).toBe(true);
      const searchGone = await searchByFile(lib, p('keep.jpg'));
      expect(searchGone?.id).toBe(row('keep.jpg')!.id);
      expect(indexContents(lib).ids).not.toContain(before.get(p('gone.jpg')));
      // The deleted photo's content is used by no file any more: its embedding and thumbnail go too.
      await engine.close();
      expect(await lib.thumbnails.has(goneHash)).toBe(false);
      expect(lib.embeddings.has(goneHash, lib.requireModel().key)).toBe(false);
      expect(lib.embeddings.has(row('keep.jpg')!.contentHash!, lib.requireModel().key)).toBe(true);
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});

describe('an unavailable root', () => {
  it('goes offline with its photos kept (not deleted), and comes back when the folder does', async () => {
    const { root, dataDir } = await fresh('offline');
    for (let i = 0; i < 3; i++) await writeJpeg(join(root, `o${i}.jpg`), 400 + i);
    const lib = await openLibrary(dataDir, modelDir);
    let engine = await IngestEngine.start(lib, { roots: [root], watch: false });
    await engine.idle();
    await engine.close();
    const ids = lib.store.db.prepare('SELECT id FROM images ORDER BY id').all().map((r) => (r as { id: number }).id);
    expect(ids).toHaveLength(3);

    // Unmounted while clipdex was stopped.
    const away = `${root}-away`;
    await rename(root, away);
    engine = await IngestEngine.start(lib, { ...FAST, offlineCheckMs: 200 });
    try {
      await engine.idle();
      const rootRow = engine.status().roots[0]!;
      expect(rootRow.state).toBe('offline');
      expect(rootRow.stateReason).toMatch(/does not exist/);
      expect(engine.status().counts).toMatchObject({ indexed: 0, offline: 3 });
      expect(lib.store.db.prepare('SELECT id FROM images ORDER BY id').all().map((r) => (r as { id: number }).id)).toEqual(ids);
      expect(indexContents(lib).ids).toEqual([]);

      // Mounted again.
      await rename(away, root);
      await waitFor(() => engine.status().roots[0]!.state === 'ok' && engine.status().counts.indexed === 3, 'root back online', 20_000);
      expect(indexContents(lib).ids).toEqual(ids);
      await engine.idle();
      expect(engine.status().progress.encoded).toBe(0);
      // And watched again.
      const back = join(root, 'after.jpg');
      await writeJpeg(back, 410);
      await waitFor(() => lib.images.getByPath(back)?.status === 'indexed', 'a file added after the root came back');
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});

describe('roots', () => {
  it('refuses a folder inside an indexed one, and a missing one, with a clear error', async () => {
    const { root, dataDir } = await fresh('nested');
    await mkdir(join(root, 'inner'));
    const lib = await openLibrary(dataDir, modelDir);
    const engine = await IngestEngine.start(lib, { roots: [root], watch: false });
    try {
      await expect(engine.addRoot(join(root, 'inner'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(engine.addRoot(join(root, 'missing'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
      expect(lib.roots.list().map((r) => r.path)).toEqual([root]);
      expect((await stat(root)).isDirectory()).toBe(true);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('adds a root while running, and removing one drops its photos from search, then their content', async () => {
    const { root, dataDir } = await fresh('add-remove');
    for (let i = 0; i < 3; i++) await writeJpeg(join(root, `r${i}.jpg`), 600 + i);
    const lib = await openLibrary(dataDir, modelDir);
    // Content is dropped once its retention has passed (test/labels-survive.test.ts: kept within it).
    const engine = await IngestEngine.start(lib, { ...FAST, orphanRetentionMs: 0 });
    try {
      const added = await engine.addRoot(root);
      await engine.idle();
      expect(engine.status().counts.indexed).toBe(3);
      const hashes = lib.store.db.prepare('SELECT content_hash AS h FROM images').all().map((r) => (r as { h: string }).h);
      expect(await engine.removeRoot(added.id)).toBe(true);
      expect(engine.status().counts).toMatchObject({ indexed: 0, pending: 0 });
      expect(indexContents(lib).ids).toEqual([]);
      expect(await engine.collectGarbage()).toBe(3);
      for (const h of hashes) expect(await lib.thumbnails.has(h)).toBe(false);
      expect(await engine.removeRoot(added.id)).toBe(false);
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});
