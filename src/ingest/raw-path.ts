/**
 * File names that are not UTF-8. Linux names are bytes; Node decodes them as UTF-8 unless asked for
 * Buffers, and a Latin-1 name (`caf\xe9.jpg`, from an old NAS share or archive) becomes `caf\uFFFD.jpg`,
 * a path that does not exist. So such a path is carried twice: as bytes, which is what is opened, and as
 * a display string, which is the database key and what people read.
 *
 * The display form decodes each name that is not UTF-8 as Latin-1 rather than UTF-8 with U+FFFD:
 * Latin-1 maps every byte to one character, so `Vacances \xe9t\xe9 2003` reads "Vacances été 2003" (these
 * names come from Latin-1/Windows-1252 systems, so it is usually the right reading), and two names that
 * differ in a byte stay two keys, where the lossy decode would turn `caf\xe9` and `caf\xe8` into one.
 */
import { isUtf8 } from 'node:buffer';

/** What fs functions are given: the display string when it is exact, else the raw bytes. */
export type FsPath = string | Buffer;

/** A folder entry's name, as read with `encoding: 'buffer'`. */
export function displayName(name: Buffer): string {
  return isUtf8(name) ? name.toString('utf8') : name.toString('latin1');
}

/**
 * The raw bytes of `parent/name`, or null when both are exact as strings (the common case, kept free
 * of copies). `parentBytes` is the parent's own raw form (null when its display string is exact).
 */
export function childBytes(parent: string, parentBytes: Buffer | null, name: Buffer): Buffer | null {
  if (parentBytes === null && isUtf8(name)) return null;
  const base = parentBytes ?? Buffer.from(parent, 'utf8');
  const needsSep = base.length === 0 || base[base.length - 1] !== 0x2f;
  return Buffer.concat(needsSep ? [base, Buffer.from('/'), name] : [base, name]);
}

/**
 * The path to hand to fs for a record that may carry raw bytes, or the path this machine reads it by
 * (`readPath`: a worker that sees the library's folders under other mount points, ingest/path-map.ts).
 */
export function fsPathOf(file: { path: string; pathBytes?: Buffer | Uint8Array | null; readPath?: FsPath }): FsPath {
  if (file.readPath !== undefined) return file.readPath;
  const bytes = file.pathBytes;
  if (!bytes) return file.path;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
