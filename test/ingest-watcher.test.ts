import { appendFile, mkdir, mkdtemp, open, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import chokidar, { type FSWatcher } from 'chokidar';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFileRules } from '../src/ingest/file-rules.js';
import { FolderWatcher, type FolderWatcherOptions, type WatchEvent, type WatchNotice } from '../src/ingest/folder-watcher.js';
import { WriteSettler, type SettledFile } from '../src/ingest/write-settle.js';
import { jpegBytes, sleep, waitFor, writeJpeg } from './helpers/ingest-fixtures.js';

let tmp: string;
let counter = 0;
const open_: FolderWatcher[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-watch-'));
});
afterEach(async () => {
  await Promise.all(open_.splice(0).map((w) => w.close()));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function freshRoot(name: string): Promise<string> {
  const root = join(tmp, `${name}-${++counter}`);
  await mkdir(root, { recursive: true });
  return root;
}

/** A watcher whose batches are recorded; fast settings so tests stay short. */
async function watch(root: string, extra: Partial<FolderWatcherOptions> = {}) {
  const batches: WatchEvent[][] = [];
  const deliveredAt = new Map<WatchEvent, number>();
  const notices: WatchNotice[] = [];
  const errors: Error[] = [];
  const watcher = await FolderWatcher.start(root, {
    debounceMs: 100,
    stableMs: 300,
    onBatch: (events) => {
      batches.push(events);
      for (const e of events) deliveredAt.set(e, Date.now());
    },
    onNotice: (n) => notices.push(n),
    onError: (e) => errors.push(e),
    ...extra,
  });
  open_.push(watcher);
  const events = () => batches.flat();
  const find = (type: WatchEvent['type'], path: string) => events().find((e) => e.type === type && e.path === path);
  const waitEvent = (type: WatchEvent['type'], path: string, timeoutMs = 15_000) =>
    waitFor(() => find(type, path), `${type} ${path}`, timeoutMs);
  return { watcher, batches, deliveredAt, notices, errors, events, find, waitEvent };
}

describe('WriteSettler', () => {
  it('releases a file written in bursts once, after the last write, with its final size', async () => {
    const path = join(await freshRoot('settle'), 'slow.bin');
    const settled: SettledFile<string>[] = [];
    let releasedAt = 0;
    const settler = new WriteSettler<string>({
      stableMs: 400,
      onSettled: (f) => {
        releasedAt = Date.now();
        settled.push(...f);
      },
    });
    try {
      let lastWriteAt = 0;
      for (let i = 0; i < 10; i++) {
        await appendFile(path, Buffer.alloc(1000, i));
        lastWriteAt = Date.now();
        const s = await stat(path);
        settler.touch(path, i === 0 ? 'add' : 'change', { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino });
        await sleep(100);
      }
      await waitFor(() => settled.length > 0, 'the file to settle');
      await sleep(500);
      expect(settled).toHaveLength(1);
      expect(settled[0]).toMatchObject({ path, tag: 'add', size: 10_000 });
      expect(settler.size).toBe(0);
      // Released a whole quiet period after the last write (each touch came after its write's timestamp).
      expect(releasedAt - lastWriteAt).toBeGreaterThanOrEqual(400);
    } finally {
      settler.close();
    }
  });

  it('holds back a preallocated file that is filled in place without events (size already final)', async () => {
    const path = join(await freshRoot('settle'), 'prealloc.bin');
    const settled: { at: number; file: SettledFile<undefined> }[] = [];
    const settler = new WriteSettler<undefined>({ stableMs: 600, onSettled: (f) => settled.push(...f.map((file) => ({ at: Date.now(), file }))) });
    const fh = await open(path, 'w');
    let lastWriteAt = 0;
    try {
      await fh.truncate(20_000);
      settler.touch(path, undefined);
      // One event at the start, as a polling watcher or a NAS might give; then silence while it fills.
      for (let i = 0; i < 16; i++) {
        await fh.write(Buffer.alloc(1250, 1 + i), 0, 1250, i * 1250);
        await fh.sync();
        lastWriteAt = Date.now();
        expect(settled, `released during write #${i}`).toHaveLength(0);
        await sleep(100);
      }
    } finally {
      await fh.close();
    }
    try {
      await waitFor(() => settled.length > 0, 'the file to settle');
      expect(settled).toHaveLength(1);
      expect(settled[0]!.file.size).toBe(20_000);
      expect(settled[0]!.at).toBeGreaterThanOrEqual(lastWriteAt);
    } finally {
      settler.close();
    }
  });

  it('drops files deleted while waiting and releases a crowd in a few groups', async () => {
    const dir = await freshRoot('settle');
    const groups: SettledFile<undefined>[][] = [];
    const gone: string[] = [];
    const settler = new WriteSettler<undefined>({ stableMs: 200, onSettled: (f) => groups.push(f), onGone: (p) => gone.push(...p) });
    try {
      const paths = Array.from({ length: 500 }, (_, i) => join(dir, `f${i}.jpg`));
      await Promise.all(paths.map((p) => writeFile(p, 'x')));
      for (const p of paths) settler.touch(p, undefined);
      await unlink(paths[0]!);
      expect(settler.forget(paths[1]!)).toBe(true);
      await waitFor(() => settler.size === 0, 'everything to settle');
      const released = groups.flat().map((f) => f.path);
      expect(new Set(released)).toEqual(new Set(paths.slice(2)));
      expect(released).toHaveLength(498);
      expect(gone).toEqual([paths[0]]);
      expect(groups.length).toBeLessThanOrEqual(10);
    } finally {
      settler.close();
    }
  });
});

describe('FolderWatcher', () => {
  it('reports add, change, rename, move, folder add/remove and delete, as settled events', async () => {
    const root = await freshRoot('events');
    await writeJpeg(join(root, 'existing.jpg'), 1);
    const w = await watch(root);
    expect(w.watcher.mode()).toBe('native');

    const added = await writeJpeg(join(root, 'new.jpg'), 2);
    expect(await w.waitEvent('add', join(root, 'new.jpg'))).toMatchObject({ root, relPath: 'new.jpg', size: added.length });

    const changed = await writeJpeg(join(root, 'existing.jpg'), 3, 80, 60);
    expect(await w.waitEvent('change', join(root, 'existing.jpg'))).toMatchObject({ size: changed.length });

    await rename(join(root, 'new.jpg'), join(root, 'renamed.jpg'));
    await w.waitEvent('unlink', join(root, 'new.jpg'));
    await w.waitEvent('add', join(root, 'renamed.jpg'));

    await writeJpeg(join(root, 'sub', 'a.jpg'), 4);
    await w.waitEvent('addDir', join(root, 'sub'));
    await w.waitEvent('add', join(root, 'sub', 'a.jpg'));

    await rename(join(root, 'renamed.jpg'), join(root, 'sub', 'moved.jpg'));
    await w.waitEvent('unlink', join(root, 'renamed.jpg'));
    expect(await w.waitEvent('add', join(root, 'sub', 'moved.jpg'))).toMatchObject({ relPath: 'sub/moved.jpg', size: added.length });

    await rm(join(root, 'sub'), { recursive: true });
    await w.waitEvent('unlinkDir', join(root, 'sub'));
    await unlink(join(root, 'existing.jpg'));
    await w.waitEvent('unlink', join(root, 'existing.jpg'));

    // Each change once: coalescing and settling never duplicate.
    const keys = w.events().map((e) => `${e.type} ${e.path}`);
    expect(keys.filter((k) => k.startsWith('add ') && k.endsWith('new.jpg'))).toHaveLength(1);
    expect(new Set(keys.filter((k) => !k.startsWith('unlink ')))).toHaveProperty('size', keys.filter((k) => !k.startsWith('unlink ')).length);
    expect(w.errors).toEqual([]);
  });

  it('never reports hidden, system, non-image or user-excluded files', async () => {
    const root = await freshRoot('rules');
    const w = await watch(root, { rules: createFileRules({ exclude: ['raw'] }) });
    const bytes = await jpegBytes(5);
    for (const rel of ['.hidden.jpg', '.git/x.jpg', 'node_modules/x.jpg', '@eaDir/x.jpg', '.thumbnails/x.jpg', 'notes.txt', 'raw/x.jpg', 'ok/raw/y.jpg', 'photo.jpg.part']) {
      await mkdir(join(root, rel, '..'), { recursive: true });
      await writeFile(join(root, rel), bytes);
    }
    await writeFile(join(root, 'sentinel.jpg'), bytes);
    await w.waitEvent('add', join(root, 'sentinel.jpg'));
    // Anything excluded would have been written and settled before the sentinel.
    await sleep(600);
    await w.watcher.flush();
    expect(w.events().map((e) => `${e.type} ${e.relPath}`).sort()).toEqual(['add sentinel.jpg', 'addDir ok']);
  });

  it('delivers a burst of 2,000 copied files in a few batches, each file once, one delivery at a time', async () => {
    const root = await freshRoot('burst');
    let delivering = 0;
    let overlapped = false;
    const w = await watch(root, {
      maxBatch: 500,
      onBatch: async (events) => {
        if (++delivering > 1) overlapped = true;
        w.batches.push(events);
        await sleep(30);
        delivering--;
      },
    });
    const bytes = await jpegBytes(6);
    const paths = Array.from({ length: 2000 }, (_, i) => join(root, `img${String(i).padStart(4, '0')}.jpg`));
    for (let i = 0; i < paths.length; i += 200) await Promise.all(paths.slice(i, i + 200).map((p) => writeFile(p, bytes)));
    await waitFor(() => w.events().filter((e) => e.type === 'add').length >= paths.length, 'all 2,000 adds', 40_000);
    await sleep(400);
    await w.watcher.flush();
    const adds = w.events().filter((e) => e.type === 'add').map((e) => e.path);
    expect(adds).toHaveLength(paths.length);
    expect(new Set(adds)).toEqual(new Set(paths));
    expect(w.batches.length).toBeLessThanOrEqual(25);
    expect(Math.max(...w.batches.map((b) => b.length))).toBeLessThanOrEqual(500);
    expect(overlapped).toBe(false);
  });

  it('reports what is created in a new folder while chokidar reads it, before it watches it: files, folders, and what is in those', async () => {
    // chokidar reads a new folder and only then watches it; a copy that finishes in between (a busy event
    // loop makes the read long) left 1,479 of 2,000 photos unreported in CI. The window is made certain here:
    // the files are written when chokidar's read of the folder ends, before its own handler sets the watch.
    const root = await freshRoot('new-folder-race');
    const bulk = join(root, 'bulk');
    const late = [...Array.from({ length: 20 }, (_, i) => join(bulk, `late${i}.jpg`)), join(bulk, 'sub', 'deep', 'x.jpg'), join(bulk, 'sub', 'y.jpg')];
    const bytes = await jpegBytes(7);
    let raced = false;
    const w = await watch(root, {
      createWatcher: (r, options) => {
        const watcher = chokidar.watch(r, options);
        const inner = watcher as unknown as { _readdirp: (dir: string, o: unknown) => NodeJS.ReadableStream | undefined };
        const readdirp = inner._readdirp.bind(watcher);
        expect(typeof readdirp).toBe('function');
        inner._readdirp = (dir, o) => {
          const stream = readdirp(dir, o);
          if (dir === bulk && stream && !raced) {
            raced = true;
            stream.once('end', () => {
              for (const p of late) {
                mkdirSync(dirname(p), { recursive: true });
                writeFileSync(p, bytes);
              }
            });
          }
          return stream;
        };
        return watcher;
      },
    });
    await writeJpeg(join(bulk, 'early.jpg'), 8);
    for (const p of [join(bulk, 'early.jpg'), ...late]) await w.waitEvent('add', p);
    expect(raced).toBe(true);
    await w.waitEvent('addDir', join(bulk, 'sub', 'deep'));
    // Watched from now on, the folders it missed included: a later file there is an event like any other.
    await writeJpeg(join(bulk, 'sub', 'deep', 'after.jpg'), 9);
    await w.waitEvent('add', join(bulk, 'sub', 'deep', 'after.jpg'));
    await sleep(400);
    await w.watcher.flush();
    const adds = w.events().filter((e) => e.type === 'add').map((e) => e.path);
    expect(adds.sort()).toEqual([join(bulk, 'early.jpg'), ...late, join(bulk, 'sub', 'deep', 'after.jpg')].sort());
    expect(w.errors).toEqual([]);
  });

  it('reports a file written slowly (appended over 1.5 s) once, complete, after the last write', async () => {
    const root = await freshRoot('slow');
    const w = await watch(root, { stableMs: 500 });
    const bytes = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#a52' } }).jpeg().toBuffer();
    const path = join(root, 'slow.jpg');
    const parts = 10;
    const step = Math.ceil(bytes.length / parts);
    let lastWriteStartedAt = 0;
    for (let i = 0; i < parts; i++) {
      // Taken before the write, so its event (and the quiet period it starts) can only come later.
      lastWriteStartedAt = Date.now();
      await appendFile(path, bytes.subarray(i * step, (i + 1) * step));
      await sleep(150);
    }
    const event = await w.waitEvent('add', path);
    await sleep(700);
    expect(w.events().filter((e) => e.path === path)).toEqual([event]);
    expect(event.size).toBe(bytes.length);
    // Reported a whole quiet period (stableMs 500) after the last write began, not while it was still growing.
    expect(w.deliveredAt.get(event)! - lastWriteStartedAt).toBeGreaterThanOrEqual(500);
    expect((await sharp(path).metadata()).width).toBe(300);
  });

  it('does not descend into a symlink loop or an in-root alias', async () => {
    const root = await freshRoot('links');
    await writeJpeg(join(root, 'sub', 'a.jpg'), 7);
    await symlink('..', join(root, 'sub', 'up'));
    await symlink(join(root, 'sub'), join(root, 'alias'));
    const w = await watch(root);
    await writeJpeg(join(root, 'sub', 'b.jpg'), 8);
    await w.waitEvent('add', join(root, 'sub', 'b.jpg'));
    await sleep(500);
    await w.watcher.flush();
    expect(w.events().filter((e) => e.path.endsWith('b.jpg')).map((e) => e.relPath)).toEqual(['sub/b.jpg']);
    expect(w.errors).toEqual([]);
  });

  it('withholds deletions when a root disappears, reports it offline once, and then stays quiet (its owner looks for the return)', async () => {
    const root = await freshRoot('offline');
    const other = await freshRoot('stays');
    await writeJpeg(join(root, 'a.jpg'), 11);
    await writeJpeg(join(root, 'sub', 'b.jpg'), 12);
    const w = await watch(root);
    const o = await watch(other);

    // As chokidar sees an unmounted share: every file under the root "deleted".
    await rm(root, { recursive: true });
    await w.waitEvent('rootOffline', root);
    expect(w.watcher.mode()).toBe('offline');
    expect(w.events().filter((e) => e.type === 'unlink' || e.type === 'unlinkDir')).toEqual([]);

    // The folder back with a photo in it: this watcher has let go of it (the engine watches it anew).
    await mkdir(root);
    await writeJpeg(join(root, 'c.jpg'), 13);
    await sleep(800);
    await w.watcher.flush();
    expect(w.events().map((e) => e.type)).toEqual(['rootOffline']);
    expect(w.watcher.mode()).toBe('offline');

    // Ordinary deletions in a root that is still there pass through untouched.
    await writeJpeg(join(other, 'e.jpg'), 15);
    // Seen first: a file created and deleted faster than chokidar stats it may never be reported at all.
    await o.waitEvent('add', join(other, 'e.jpg'));
    await unlink(join(other, 'e.jpg'));
    await o.waitEvent('unlink', join(other, 'e.jpg'));
    expect(o.events().filter((e) => e.type === 'rootOffline')).toEqual([]);
  });

  it('stops reporting once closed (a removed root), while another root\'s watcher goes on', async () => {
    const dropped = await freshRoot('dropped');
    const kept = await freshRoot('kept');
    const d = await watch(dropped);
    const k = await watch(kept);
    expect(d.watcher.root).toBe(dropped);
    await d.watcher.close();
    await writeJpeg(join(dropped, 'x.jpg'), 16);
    await writeJpeg(join(kept, 'y.jpg'), 17);
    await k.waitEvent('add', join(kept, 'y.jpg'));
    await sleep(500);
    await k.watcher.flush();
    expect(d.events()).toEqual([]);
    expect(k.events().map((e) => e.path)).toEqual([join(kept, 'y.jpg')]);
  });

  it('refuses a root that does not exist', async () => {
    await expect(FolderWatcher.start(join(tmp, 'missing-root'), { onBatch: () => {} })).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });

  it('falls back to polling for the root that hits the watch limit, says so once, and keeps reporting', async () => {
    // ENOSPC cannot be provoked without lowering fs.inotify.max_user_watches for the whole machine.
    // chokidar reports it as an 'error' event carrying the errno, which is exactly what is injected
    // here, on the real native watcher, before it is ready (as when the limit is hit during setup).
    const limited = await freshRoot('limited');
    const healthy = await freshRoot('healthy');
    const made: { root: string; usePolling: boolean; watcher: FSWatcher }[] = [];
    const options: Partial<FolderWatcherOptions> = {
      pollIntervalMs: 100,
      createWatcher: (root, options) => {
        const watcher = chokidar.watch(root, options);
        made.push({ root, usePolling: options.usePolling === true, watcher });
        if (root === limited && !options.usePolling) {
          const err = Object.assign(new Error(`ENOSPC: System limit for number of file watchers reached, watch '${root}'`), {
            code: 'ENOSPC',
            syscall: 'watch',
          });
          setImmediate(() => watcher.emit('error', err));
        }
        return watcher;
      },
    };
    const [w, h] = await Promise.all([watch(limited, options), watch(healthy, options)]);
    await waitFor(() => w.notices.length > 0, 'the fallback notice');
    expect(w.watcher.mode()).toBe('polling');
    expect(h.watcher.mode()).toBe('native');
    expect(made.map((m) => [m.root, m.usePolling])).toEqual(expect.arrayContaining([[limited, false], [healthy, false], [limited, true]]));
    expect(made).toHaveLength(3);
    expect(w.notices).toEqual([expect.objectContaining({ kind: 'polling-fallback', root: limited, code: 'ENOSPC', rescanAdvised: true })]);
    expect(w.notices[0]!.message).toMatch(new RegExp(`Watching ${limited} by polling every 100 ms`));
    expect(w.notices[0]!.message).toContain('max_user_watches');

    await writeJpeg(join(limited, 'after-fallback.jpg'), 9);
    await writeJpeg(join(healthy, 'still-native.jpg'), 10);
    await w.waitEvent('add', join(limited, 'after-fallback.jpg'));
    await h.waitEvent('add', join(healthy, 'still-native.jpg'));

    // The limit error again, now from the polling watcher: no second notice, no second switch.
    made.find((m) => m.root === limited && m.usePolling)!.watcher.emit('error', Object.assign(new Error('ENOSPC again'), { code: 'ENOSPC' }));
    await sleep(100);
    expect(w.notices).toHaveLength(1);
    expect(h.notices).toEqual([]);
    expect(made).toHaveLength(3);
    expect(w.errors).toEqual([]);
    expect(h.errors).toEqual([]);
  });
});
