import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import { classifyDirLink } from '../src/ingest/dir-links.js';
import { createFileRules, hasImageExtension, ownDirsUnder, relativeToRoot } from '../src/ingest/file-rules.js';
import { scanRoot, type RootScan, type ScanBatch, type ScannedFile, type ScanProblem } from '../src/ingest/scanner.js';
import { IS_ROOT, withoutRootPowers } from './helpers/ingest-fixtures.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-scan-'));
  // Traversable by the unprivileged user the permission tests switch to.
  await chmod(tmp, 0o755);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function put(path: string, content = 'x'): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
}

async function collect(scan: RootScan): Promise<{ files: ScannedFile[]; problems: ScanProblem[]; batches: ScanBatch[] }> {
  if (!scan.ok) throw new Error(`root unavailable: ${scan.message}`);
  const batches: ScanBatch[] = [];
  for await (const b of scan.batches) batches.push(b);
  return { files: batches.flatMap((b) => b.files), problems: batches.flatMap((b) => b.problems), batches };
}

describe('file rules', () => {
  const rules = createFileRules({ exclude: ['raw', '*.tmp.jpg', '2019/private', '/exports/', '**/skip-*/**'] });

  it('takes every supported extension in any case, and nothing else', () => {
    for (const name of ['a.jpg', 'b.JPEG', 'c.Png', 'd.webp', 'e.GIF', 'f.tif', 'g.TIFF', 'h.bmp', 'i.HEIC', 'j.heif', 'k.avif']) {
      expect(rules.isCandidateFile(`x/${name}`), name).toBe(true);
    }
    for (const name of ['a.txt', 'a.jpg.part', 'a.jpg~', 'jpg', 'a.', 'a.psd', 'a.mov', 'a.jpgx']) {
      expect(rules.isCandidateFile(`x/${name}`), name).toBe(false);
    }
    expect(hasImageExtension('.jpg')).toBe(false);
  });

  it('excludes hidden entries, system folders and the user globs, at any depth', () => {
    const excluded = [
      '.hidden.jpg',
      'a/.hidden.jpg',
      '.git/x.jpg',
      'a/.thumbnails/x.jpg',
      'node_modules/x.jpg',
      'a/b/@eaDir/x.jpg/SYNOPHOTO_THUMB_XL.jpg',
      '#recycle/x.jpg',
      'a/@EADIR/x.jpg',
      'b/raw/x.jpg',
      'a/photo.tmp.jpg',
      '2019/private/x.jpg',
      '2019/private/deep/x.jpg',
      'exports/x.jpg',
      'a/skip-me/x.jpg',
    ];
    for (const p of excluded) expect(rules.isCandidateFile(p), p).toBe(false);
    const kept = ['x.jpg', 'a/b/x.jpg', 'rawfiles/x.jpg', 'a/2019/private/x.jpg', '2019/privateer/x.jpg', 'a/exports/x.jpg', 'a/skipper/x.jpg'];
    for (const p of kept) expect(rules.isCandidateFile(p), p).toBe(true);
    expect(rules.isExcludedDir('2019/private')).toBe(true);
    expect(rules.isExcludedDir('a/.git')).toBe(true);
    expect(rules.isExcludedDir('2019')).toBe(false);
  });

  it('refuses empty or root-wide globs with INVALID_ARGUMENT', () => {
    for (const bad of ['', '  ', '/', './']) {
      expect(() => createFileRules({ exclude: [bad] }), JSON.stringify(bad)).toThrow(ClipdexError);
    }
  });

  it("leaves out the library's own folders inside a root, by exact path, glob characters and all", () => {
    const root = '/home/me/Pictures';
    const own = ownDirsUnder([root], ['/home/me/Pictures/[data] *', '/home/me/.cache/clipdex', '/home/me/Pictures/trip/cache', root]);
    // Outside the root, or the root itself: nothing to leave out here.
    expect(own.sort()).toEqual(['[data] *', 'trip/cache']);
    const rules = createFileRules({ excludeDirs: own });
    expect(rules.isCandidateFile('[data] */thumbnails/ab/ab12.webp')).toBe(false);
    expect(rules.isExcludedDir('trip/cache')).toBe(true);
    expect(rules.isCandidateFile('trip/cache/models/x.jpg')).toBe(false);
    // Only those folders: not their namesakes elsewhere, nor what a glob reading of the name would match.
    expect(rules.isCandidateFile('d/ata/x.jpg')).toBe(true);
    expect(rules.isCandidateFile('cache/x.jpg')).toBe(true);
    expect(rules.isCandidateFile('d] x/y.jpg')).toBe(true);
    expect(rules.isCandidateFile('trip/cache.jpg')).toBe(true);
    expect(rules.exclude).toEqual([]);
  });

  it('judges paths relative to their root', () => {
    expect(relativeToRoot('/p/.photos', '/p/.photos/a/b.jpg')).toBe('a/b.jpg');
    expect(relativeToRoot('/p/.photos', '/p/.photos')).toBe('');
    expect(relativeToRoot('/p/photos', '/p/photos2/x.jpg')).toBeNull();
    expect(relativeToRoot('/p/photos', '/p/x.jpg')).toBeNull();
  });

  it('classifies links to folders: loops, in-root aliases, and outside folders to follow', () => {
    expect(classifyDirLink('/r/a', '/r/a/b', '/r')).toBe('loop');
    expect(classifyDirLink('/r', '/r/a', '/r')).toBe('loop');
    expect(classifyDirLink('/', '/r/a', '/r')).toBe('loop');
    expect(classifyDirLink('/r/c', '/r/a', '/r')).toBe('alias');
    expect(classifyDirLink('/elsewhere', '/r/a', '/r')).toBe('follow');
    expect(classifyDirLink('/r2', '/r/a', '/r')).toBe('follow');
  });
});

describe('scanRoot', () => {
  it('lists candidate files with size and mtime; follows outside links, reports loops and broken links', async () => {
    // The root itself is a hidden folder: only what is inside it is judged.
    const root = join(tmp, 'tree', '.library');
    const outside = join(tmp, 'tree', 'outside');
    await put(join(root, 'a.jpg'), 'aaaa');
    await put(join(root, 'B.PNG'), 'bb');
    await put(join(root, 'notes.txt'));
    await put(join(root, '.hidden.jpg'));
    await put(join(root, 'sub', 'deep', 'c.webp'), 'ccc');
    await put(join(root, 'sub', '.git', 'd.jpg'));
    await put(join(root, 'sub', 'node_modules', 'e.jpg'));
    await put(join(root, '@eaDir', 'f.jpg'));
    await put(join(root, 'raw', 'g.jpg'));
    await put(join(outside, 'o.jpg'), 'ooooo');
    await symlink(outside, join(root, 'linked'));
    await symlink('..', join(root, 'sub', 'up'));
    await symlink(join(root, 'sub'), join(root, 'sub-alias'));
    await symlink(join(root, 'a.jpg'), join(root, 'a-link.jpg'));
    await symlink(join(root, 'missing.jpg'), join(root, 'dangling.jpg'));
    await symlink(join(root, 'missing-too'), join(root, 'dangling-no-image'));
    await symlink(join(root, 'self2.jpg'), join(root, 'self1.jpg'));
    await symlink(join(root, 'self1.jpg'), join(root, 'self2.jpg'));

    const scan = await scanRoot(root, { rules: createFileRules({ exclude: ['raw'] }) });
    const { files, problems } = await collect(scan);
    expect(files.map((f) => f.relPath).sort()).toEqual(['B.PNG', 'a-link.jpg', 'a.jpg', 'linked/o.jpg', 'sub/deep/c.webp']);
    for (const f of files) {
      const s = await stat(f.path);
      expect(f.path).toBe(join(root, f.relPath));
      expect([f.size, f.mtimeMs]).toEqual([s.size, s.mtimeMs]);
    }
    expect(files.find((f) => f.relPath === 'linked/o.jpg')!.size).toBe(5);

    const byPath = new Map(problems.map((p) => [p.path, p]));
    expect(byPath.get(join(root, 'sub', 'up'))).toMatchObject({ code: 'ELOOP', isDir: true });
    expect(byPath.get(join(root, 'dangling.jpg'))).toMatchObject({ code: 'ENOENT', isDir: false });
    expect(byPath.get(join(root, 'self1.jpg'))?.code).toBe('ELOOP');
    expect(byPath.get(join(root, 'self2.jpg'))?.code).toBe('ELOOP');
    // A dangling link without an image name is nobody's photo; the in-root alias is skipped quietly.
    expect(problems).toHaveLength(4);
    for (const p of problems) expect(p.message).toContain(p.path);
    expect(scan.ok && scan.summary).toMatchObject({ files: 5, problems: 4, unreadableDirs: [], skippedAliases: 1, complete: true, rootLost: false });
  });

  it('delivers a folder of 10,000 files in bounded batches, each file once', async () => {
    const root = join(tmp, 'big');
    await mkdir(join(root, 'many'), { recursive: true });
    await mkdir(join(root, 'few'), { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < 10_000; i += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, k) => {
          names.push(`many/p${i + k}.jpg`);
          return writeFile(join(root, 'many', `p${i + k}.jpg`), '');
        }),
      );
    }
    for (let i = 0; i < 7; i++) {
      names.push(`few/q${i}.JPG`);
      await writeFile(join(root, 'few', `q${i}.JPG`), '');
    }
    const { files, batches } = await collect(await scanRoot(root, { batchSize: 256 }));
    expect(files).toHaveLength(names.length);
    expect(new Set(files.map((f) => f.relPath))).toEqual(new Set(names));
    expect(Math.max(...batches.map((b) => b.files.length))).toBeLessThanOrEqual(256);
    expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(names.length / 256));
  });

  it('says when the root is missing or not a folder, instead of listing nothing', async () => {
    const missing = await scanRoot(join(tmp, 'no-such-root'));
    expect(missing).toMatchObject({ ok: false, code: 'ENOENT' });
    expect(!missing.ok && missing.message).toContain('no-such-root');
    const file = join(tmp, 'plain-file');
    await writeFile(file, 'x');
    expect(await scanRoot(file)).toMatchObject({ ok: false, code: 'ENOTDIR' });
  });

  it('reports folders that vanish mid-walk as problems and goes on; a lost root is flagged', async () => {
    const root = join(tmp, 'vanishing');
    for (let i = 0; i < 6; i++) await put(join(root, `d${i}`, 'x.jpg'));
    const scan = await scanRoot(root, { batchSize: 1 });
    if (!scan.ok) throw new Error(scan.message);
    const seen: string[] = [];
    const problems: ScanProblem[] = [];
    for await (const b of scan.batches) {
      if (seen.length === 0) {
        // The walk holds the other folders on its stack: remove them all under its feet.
        const first = b.files[0]!.relPath.split('/')[0];
        for (let i = 0; i < 6; i++) if (`d${i}` !== first) await rm(join(root, `d${i}`), { recursive: true });
      }
      seen.push(...b.files.map((f) => f.relPath));
      problems.push(...b.problems);
    }
    expect(seen).toHaveLength(1);
    expect(problems).toHaveLength(5);
    for (const p of problems) expect(p).toMatchObject({ code: 'ENOENT', isDir: true });
    // Gone is gone: a vanished folder is not "unreadable" (the sweep may delete its rows).
    expect(scan.summary).toMatchObject({ unreadableDirs: [], complete: true, rootLost: false });

    const lost = join(tmp, 'lost-root');
    for (let i = 0; i < 3; i++) await put(join(lost, `d${i}`, 'x.jpg'));
    const lostScan = await scanRoot(lost, { batchSize: 1 });
    if (!lostScan.ok) throw new Error(lostScan.message);
    for await (const _ of lostScan.batches) await rm(lost, { recursive: true, force: true });
    expect(lostScan.summary).toMatchObject({ complete: true, rootLost: true });
  });

  it('stops when the signal aborts', async () => {
    const root = join(tmp, 'abort');
    for (let i = 0; i < 5; i++) await put(join(root, `d${i}`, 'x.jpg'));
    const controller = new AbortController();
    const scan = await scanRoot(root, { batchSize: 1, signal: controller.signal });
    if (!scan.ok) throw new Error(scan.message);
    const consume = async () => {
      for await (const _ of scan.batches) controller.abort();
    };
    await expect(consume()).rejects.toMatchObject({ name: 'AbortError' });
    expect(scan.summary.complete).toBe(false);
  });

  it(`reports unreadable folders and an unreadable root${IS_ROOT ? ' (as root: run with effective uid nobody)' : ''}`, async () => {
    const root = join(tmp, 'perm');
    await put(join(root, 'ok.jpg'));
    await put(join(root, 'locked', 'hidden-from-us.jpg'));
    await put(join(root, 'locked-root', 'x.jpg'));
    await chmod(join(root, 'locked'), 0o000);
    await chmod(join(root, 'locked-root'), 0o000);
    try {
      const { files, problems, scan } = await withoutRootPowers(async () => {
        const s = await scanRoot(root, { rules: createFileRules({ exclude: ['locked-root'] }) });
        return { ...(await collect(s)), scan: s };
      });
      expect(files.map((f) => f.relPath)).toEqual(['ok.jpg']);
      expect(problems).toEqual([expect.objectContaining({ path: join(root, 'locked'), code: 'EACCES', isDir: true })]);
      expect(problems[0]!.message).toContain('permission denied');
      expect(scan.ok && scan.summary.unreadableDirs).toEqual(['locked']);

      const unreadableRoot = await withoutRootPowers(() => scanRoot(join(root, 'locked-root')));
      expect(unreadableRoot).toMatchObject({ ok: false, code: 'EACCES' });
    } finally {
      await chmod(join(root, 'locked'), 0o755);
      await chmod(join(root, 'locked-root'), 0o755);
    }
  });
});
