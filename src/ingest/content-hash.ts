/**
 * Content identity of a file: sha256 of its bytes, with the size and mtime seen while reading
 * them. A rename keeps the hash, so a moved photo re-uses its embedding; two copies share one.
 *
 * A file can change while it is read (a copy still landing, an editor saving). The stat taken
 * before reading is compared with one taken after, on the open descriptor and on the path, and
 * the byte count with the size; any difference sets `changed`, and the hash must not be
 * trusted: the caller should wait for the file to settle and read it again.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { FsPath } from './raw-path.js';
import { ClipdexError } from '../errors.js';

export interface ContentSnapshot {
  /** sha256 of the bytes read, lower-case hex (64 characters). */
  hash: string;
  /** Size and mtime from the stat taken before reading. */
  size: number;
  mtimeMs: number;
  /** True when the file changed (or was replaced) while it was read: the hash describes no stable version. */
  changed: boolean;
}

export interface ContentBytes extends ContentSnapshot {
  bytes: Buffer;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** fs failures as the typed errors the rest of clipdex reports for files. */
export function fileError(err: unknown, path: string): ClipdexError {
  if (err instanceof ClipdexError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const details = { file: path, errno: code };
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new ClipdexError('FILE_NOT_FOUND', `File not found: ${path}`, { cause: err, details });
    case 'EACCES':
    case 'EPERM':
      return new ClipdexError('FILE_UNREADABLE', `Permission denied reading ${path}`, { cause: err, details });
    case 'ELOOP':
      return new ClipdexError('FILE_UNREADABLE', `${path} is a symbolic link loop`, { cause: err, details });
    case 'EISDIR':
      return new ClipdexError('NOT_AN_IMAGE', `${path} is a folder, not an image`, { cause: err, details });
    default:
      return new ClipdexError('FILE_UNREADABLE', `Cannot read ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err, details });
  }
}

function sameVersion(a: Stats, b: Stats): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** Did the file change between `before` and now, judged by the descriptor and by the path? */
async function changedSince(fh: FileHandle, path: FsPath, before: Stats, bytesRead: number): Promise<boolean> {
  if (bytesRead !== before.size) return true;
  const [viaFd, viaPath] = await Promise.all([fh.stat(), stat(path).catch(() => null)]);
  // Replaced by a rename (new inode) or deleted: the bytes read are not what the path holds now.
  return !sameVersion(before, viaFd) || viaPath === null || !sameVersion(before, viaPath);
}

/** `path` names the file in messages; `at` is what is opened (its raw bytes when the name is not UTF-8). */
async function openRegular(path: string, at: FsPath): Promise<{ fh: FileHandle; before: Stats }> {
  let fh: FileHandle;
  try {
    fh = await open(at, 'r');
  } catch (err) {
    throw fileError(err, path);
  }
  try {
    const before = await fh.stat();
    if (before.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    return { fh, before };
  } catch (err) {
    await fh.close();
    throw fileError(err, path);
  }
}

/** Streams the file through sha256; memory stays at one read buffer whatever the size. */
export async function hashFile(path: string, options: { signal?: AbortSignal; at?: FsPath } = {}): Promise<ContentSnapshot> {
  const at = options.at ?? path;
  const { fh, before } = await openRegular(path, at);
  try {
    const hash = createHash('sha256');
    let bytesRead = 0;
    // Checked per 1 MiB chunk rather than handed to the stream, whose own abort also fires an
    // 'error' event that nobody listens to once the loop has ended.
    options.signal?.throwIfAborted();
    const stream = fh.createReadStream({ autoClose: false, start: 0, highWaterMark: 1 << 20 });
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      options.signal?.throwIfAborted();
      hash.update(chunk);
      bytesRead += chunk.length;
    }
    const changed = await changedSince(fh, at, before, bytesRead);
    return { hash: hash.digest('hex'), size: before.size, mtimeMs: before.mtimeMs, changed };
  } catch (err) {
    if ((err as Error)?.name === 'AbortError') throw err;
    throw fileError(err, path);
  } finally {
    await fh.close();
  }
}

export interface ReadSnapshotOptions {
  /** Refuse files larger than this many bytes before reading them (default 1 GiB). */
  maxBytes?: number;
  /** What to open, when it is not `path` itself (a name that is not UTF-8: see raw-path.ts). */
  at?: FsPath;
}

export const DEFAULT_MAX_FILE_BYTES = 1 << 30;

/**
 * Reads the whole file once and hashes those same bytes, so a decoder given `bytes` sees
 * exactly the content the hash names (two separate reads could straddle a write).
 */
export async function readFileSnapshot(path: string, options: ReadSnapshotOptions = {}): Promise<ContentBytes> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_FILE_BYTES;
  const at = options.at ?? path;
  const { fh, before } = await openRegular(path, at);
  try {
    if (before.size > maxBytes) {
      throw new ClipdexError('IMAGE_TOO_LARGE', `${path} is ${before.size} bytes, more than the ${maxBytes}-byte limit for one image`, {
        details: { file: path, size: before.size, maxBytes },
      });
    }
    // One byte more than expected: a file that grew since the stat shows up as a longer read.
    const bytes = Buffer.allocUnsafe(before.size + 1);
    let bytesRead = 0;
    for (;;) {
      const { bytesRead: n } = await fh.read(bytes, bytesRead, bytes.length - bytesRead, bytesRead);
      if (n === 0) break;
      bytesRead += n;
      if (bytesRead === bytes.length) break;
    }
    const changed = await changedSince(fh, at, before, bytesRead);
    const content = bytes.subarray(0, Math.min(bytesRead, before.size));
    return { bytes: content, hash: sha256Hex(content), size: before.size, mtimeMs: before.mtimeMs, changed };
  } catch (err) {
    throw fileError(err, path);
  } finally {
    await fh.close();
  }
}
