import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { ModelSpec } from '../model/model-dir.js';

/**
 * Where whole-file fingerprints are remembered, inside the model cache dir: they describe model files,
 * which every library on the machine shares, and like the downloaded weights they can always be computed
 * again (the cache dir holds what may be lost; the data dir holds what the user built).
 */
export const FINGERPRINT_CACHE_FILE = 'model-fingerprints.json';

export interface ModelKeyOptions {
  /** The model cache dir; without it every file is hashed in full each time. */
  cacheDir?: string;
}

/**
 * The key stored with every embedding and index: the model's name plus a sha256 of every byte of its ONNX
 * files. Two models that differ anywhere (a fine-tuned middle block, a quantized variant of equal size)
 * must never share vectors. Hashing 600 MB costs seconds, so each file's digest is cached by path, size,
 * mtime, ctime and inode; ctime is there because a tool that rewrites bytes and restores the mtime cannot
 * restore it.
 */
export async function modelKeyFor(spec: ModelSpec, options: ModelKeyOptions = {}): Promise<string> {
  const cache = options.cacheDir ? await FingerprintCache.load(join(options.cacheDir, FINGERPRINT_CACHE_FILE)) : null;
  const hash = createHash('sha256');
  for (const file of [spec.vision.file, spec.text.file]) {
    const path = resolve(spec.dir, file);
    const st = await stat(path);
    const stamp: FileStamp = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, dev: st.dev, ino: st.ino };
    let digest = cache?.lookup(path, stamp);
    if (!digest) {
      digest = await sha256File(path);
      // Read again after hashing: a file rewritten meanwhile would otherwise be cached under its new stamp.
      const after = await stat(path);
      if (after.size === st.size && after.mtimeMs === st.mtimeMs && after.ctimeMs === st.ctimeMs) cache?.put(path, stamp, digest);
    }
    hash.update(`${file}:${st.size}:${digest}\n`);
  }
  await cache?.save();
  return `${modelName(spec)}#${hash.digest('hex').slice(0, 12)}`;
}

const LEGACY_SAMPLE = 64 * 1024;

/**
 * The key as clipdex computed it before whole-file fingerprints: each ONNX file's size and its first and
 * last 64 KB. Kept only so that a library keyed this way can be re-keyed when it opens (library.ts).
 */
export async function legacyModelKeyFor(spec: ModelSpec): Promise<string> {
  const hash = createHash('sha256');
  for (const file of [spec.vision.file, spec.text.file]) {
    const path = join(spec.dir, file);
    const { size } = await stat(path);
    hash.update(`${file}:${size}:`);
    const fh = await open(path, 'r');
    try {
      for (const position of [0, Math.max(0, size - LEGACY_SAMPLE)]) {
        const buf = Buffer.alloc(Math.min(LEGACY_SAMPLE, size));
        await fh.read(buf, 0, buf.length, position);
        hash.update(buf);
      }
    } finally {
      await fh.close();
    }
  }
  return `${modelName(spec)}#${hash.digest('hex').slice(0, 12)}`;
}

/** A `models quantize` folder says int8 in its name too, whatever the folder is called (the hash alone already differs). */
function modelName(spec: ModelSpec): string {
  const name = spec.id.startsWith('dir:') ? basename(spec.dir) : spec.id;
  return spec.quantization && !/int8/i.test(name) ? `${name}-int8` : name;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

interface FileStamp {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  dev: number;
  ino: number;
}

interface CacheEntry extends FileStamp {
  sha256: string;
}

const CACHE_FORMAT = 'clipdex-model-fingerprints-1';

/** The JSON cache file. Losing it, or failing to write it, only costs a re-hash: errors are never raised. */
class FingerprintCache {
  private dirty = false;

  private constructor(
    private readonly file: string,
    private readonly entries: Record<string, CacheEntry>,
  ) {}

  static async load(file: string): Promise<FingerprintCache> {
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as { format?: unknown; files?: unknown };
      if (parsed.format === CACHE_FORMAT && typeof parsed.files === 'object' && parsed.files !== null) {
        return new FingerprintCache(file, parsed.files as Record<string, CacheEntry>);
      }
    } catch {
      // Absent or unreadable: start empty.
    }
    return new FingerprintCache(file, {});
  }

  lookup(path: string, s: FileStamp): string | undefined {
    const e = this.entries[path];
    if (!e || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) return undefined;
    const same = e.size === s.size && e.mtimeMs === s.mtimeMs && e.ctimeMs === s.ctimeMs && e.dev === s.dev && e.ino === s.ino;
    return same ? e.sha256 : undefined;
  }

  put(path: string, s: FileStamp, sha256: string): void {
    this.entries[path] = { ...s, sha256 };
    this.dirty = true;
  }

  /** Written to a temporary name and renamed, so a concurrent reader never sees half a file. */
  async save(): Promise<void> {
    if (!this.dirty) return;
    const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(this.file), { recursive: true });
      await writeFile(tmp, JSON.stringify({ format: CACHE_FORMAT, files: this.entries }));
      await rename(tmp, this.file);
      this.dirty = false;
    } catch {
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
