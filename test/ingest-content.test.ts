import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import { hashFile, readFileSnapshot, type ContentSnapshot } from '../src/ingest/content-hash.js';
import { ThumbnailStore } from '../src/store/thumbnail-store.js';
import { IS_ROOT, withoutRootPowers } from './helpers/ingest-fixtures.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-content-'));
  await chmod(tmp, 0o755);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** sha256sum(1) when installed: an oracle that shares no code with ours. */
function referenceSha256(path: string, bytes: Buffer): string {
  try {
    return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]!;
  } catch {
    return createHash('sha256').update(bytes).digest('hex');
  }
}

describe('content hash', () => {
  it('hashes a file (streamed, several chunks) to its sha256, with the size and mtime it saw', async () => {
    const path = join(tmp, 'big.bin');
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(path, bytes);
    const s = await stat(path);
    const expected = referenceSha256(path, bytes);
    expect(await hashFile(path)).toEqual({ hash: expected, size: bytes.length, mtimeMs: s.mtimeMs, changed: false });
    const snap = await readFileSnapshot(path);
    expect(snap.bytes.equals(bytes)).toBe(true);
    expect({ ...snap, bytes: undefined }).toEqual({ hash: expected, size: bytes.length, mtimeMs: s.mtimeMs, changed: false, bytes: undefined });

    const empty = join(tmp, 'empty.jpg');
    await writeFile(empty, '');
    expect((await hashFile(empty)).hash).toBe(createHash('sha256').digest('hex'));
  });

  it('identical bytes at two paths have one hash; one changed byte gives another', async () => {
    const bytes = randomBytes(1000);
    await writeFile(join(tmp, 'one.jpg'), bytes);
    await writeFile(join(tmp, 'two.jpg'), bytes);
    bytes[500]! ^= 1;
    await writeFile(join(tmp, 'three.jpg'), bytes);
    const [a, b, c] = await Promise.all(['one', 'two', 'three'].map((n) => hashFile(join(tmp, `${n}.jpg`))));
    expect(a!.hash).toBe(b!.hash);
    expect(c!.hash).not.toBe(a!.hash);
  });

  /**
   * The writer races the reader, so which side wins varies; the invariant does not: either the
   * result says `changed`, or its hash is the hash of a complete version of the file.
   */
  async function raceWriter(
    read: (path: string) => Promise<ContentSnapshot>,
    write: (path: string) => Promise<void>,
    label: string,
  ): Promise<void> {
    let detected = 0;
    for (let attempt = 0; attempt < 12 && detected < 2; attempt++) {
      const path = join(tmp, `race-${label}-${attempt}.bin`);
      const before = randomBytes(24 * 1024 * 1024);
      await writeFile(path, before);
      const reading = read(path);
      await new Promise((r) => setTimeout(r, 2 + attempt));
      await write(path);
      const result = await reading;
      const after = await readFile(path);
      if (result.changed) detected++;
      else expect([sha256(before), sha256(after)]).toContain(result.hash);
    }
    expect(detected, `${label}: a write during the read was never detected`).toBeGreaterThan(0);
  }
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it('flags a file appended to while it is hashed', async () => {
    await raceWriter((p) => hashFile(p), (p) => appendFile(p, 'more bytes'), 'append-stream');
    await raceWriter((p) => readFileSnapshot(p), (p) => appendFile(p, 'more bytes'), 'append-read');
  });

  it('flags a file replaced by a rename while it is read', async () => {
    const replace = async (p: string) => {
      await writeFile(`${p}.new`, 'the new version');
      await rename(`${p}.new`, p);
    };
    await raceWriter((p) => readFileSnapshot(p), replace, 'replace');
  });

  it('stops hashing when the signal aborts', async () => {
    const path = join(tmp, 'abort.bin');
    await writeFile(path, randomBytes(1024 * 1024));
    await expect(hashFile(path, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('typed errors: missing file, folder, too large', async () => {
    await expect(hashFile(join(tmp, 'nope.jpg'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    await expect(readFileSnapshot(join(tmp, 'nope.jpg'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    await mkdir(join(tmp, 'dir.jpg'), { recursive: true });
    await expect(hashFile(join(tmp, 'dir.jpg'))).rejects.toMatchObject({ code: 'NOT_AN_IMAGE' });
    await writeFile(join(tmp, 'huge.jpg'), Buffer.alloc(4096));
    const err = await readFileSnapshot(join(tmp, 'huge.jpg'), { maxBytes: 4095 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClipdexError);
    expect(err).toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect((err as Error).message).toContain('huge.jpg');
  });

  it(`FILE_UNREADABLE when permission is denied${IS_ROOT ? ' (as root: run with effective uid nobody)' : ''}`, async () => {
    const path = join(tmp, 'locked.jpg');
    await writeFile(path, 'secret');
    await chmod(path, 0o000);
    await withoutRootPowers(async () => {
      await expect(hashFile(path)).rejects.toMatchObject({ code: 'FILE_UNREADABLE' });
      await expect(readFileSnapshot(path)).rejects.toMatchObject({ code: 'FILE_UNREADABLE' });
    });
  });
});

describe('thumbnail store', () => {
  const hashOf = (s: string) => createHash('sha256').update(s).digest('hex');

  it('stores by content hash under a two-character fan-out, atomically', async () => {
    const store = new ThumbnailStore(join(tmp, 'data'));
    const h = hashOf('photo-1');
    expect(store.path(h)).toBe(join(tmp, 'data', 'thumbnails', h.slice(0, 2), `${h}.webp`));
    expect(await store.has(h)).toBe(false);
    expect(await store.get(h)).toBeNull();
    const bytes = randomBytes(500);
    expect(await store.put(h, bytes)).toBe(store.path(h));
    expect(await store.has(h)).toBe(true);
    expect((await store.get(h))!.equals(bytes)).toBe(true);

    // Writers racing on one hash: the file is always one whole version, and no temporary file is left.
    const versions = Array.from({ length: 16 }, () => randomBytes(20_000));
    await Promise.all(versions.map((v) => store.put(h, v)));
    const final = (await store.get(h))!;
    expect(versions.some((v) => v.equals(final))).toBe(true);
    expect(await readdir(join(store.root, h.slice(0, 2)))).toEqual([`${h}.webp`]);

    expect(await store.remove(h)).toBe(true);
    expect(await store.remove(h)).toBe(false);
    expect(await store.has(h)).toBe(false);
  });

  it('refuses anything that is not a content hash (no path escapes) and empty thumbnails', async () => {
    const store = new ThumbnailStore(join(tmp, 'data-bad'));
    for (const bad of ['../../etc/passwd', `${'ABCDEF'.repeat(10)}abcd`, hashOf('x').slice(1), '']) {
      expect(() => store.path(bad), bad).toThrow(ClipdexError);
      await expect(store.put(bad, Buffer.from('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.has(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(store.put(hashOf('y'), Buffer.alloc(0))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('prune keeps what the set or lookup keeps, what was written meanwhile, and young temporary files', async () => {
    const store = new ThumbnailStore(join(tmp, 'data-prune'));
    const hashes = Array.from({ length: 30 }, (_, i) => hashOf(`p${i}`));
    const old = new Date(Date.now() - 3_600_000);
    for (const h of hashes) {
      await store.put(h, Buffer.from(h));
      await utimes(store.path(h), old, old);
    }
    const staleTmp = `${store.path(hashes[0]!)}.tmp-999-1`;
    const youngTmp = `${store.path(hashes[1]!)}.tmp-999-2`;
    await writeFile(staleTmp, 'x');
    await utimes(staleTmp, old, old);
    await writeFile(youngTmp, 'x');

    const keep = new Set(hashes.slice(0, 10));
    expect(await store.prune(keep)).toEqual({ kept: 10, removed: 20, removedTemp: 1 });
    for (const [i, h] of hashes.entries()) expect(await store.has(h), `#${i}`).toBe(i < 10);
    expect(await stat(youngTmp).then(() => true, () => false)).toBe(true);

    // A lookup (as the database would answer it); one photo is re-indexed while the prune runs.
    for (const h of hashes.slice(0, 10)) await utimes(store.path(h), old, old);
    const rewritten = hashes[9]!;
    let rewrote = false;
    const result = await store.prune(async (h) => {
      if (!rewrote) {
        rewrote = true;
        await store.put(rewritten, Buffer.from('new'));
      }
      return h === hashes[0];
    });
    expect(result).toMatchObject({ kept: 2, removed: 8 });
    expect(await store.has(hashes[0]!)).toBe(true);
    expect((await store.get(rewritten))!.toString()).toBe('new');
    // Even an empty keep-set spares the thumbnail written moments ago.
    expect(await store.prune(new Set())).toMatchObject({ removed: 1, kept: 1 });
    expect(await store.has(rewritten)).toBe(true);
  });
});
