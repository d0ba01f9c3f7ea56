/**
 * Turns a path or a byte buffer into a checked image source: the file exists, is readable,
 * is not empty and starts with the magic bytes of a format we decode. Every failure here is a
 * typed error that names the file, so one bad file can be reported and skipped.
 */
import { open, readFile } from 'node:fs/promises';
import { ClipdexError } from '../errors.js';
import { detectImageFormat, SNIFF_BYTES, type ImageFormat } from './image-format.js';

/** A file path, or the encoded bytes of an image (a Buffer is a Uint8Array). */
export type ImageInput = string | Uint8Array;

export interface ImageSource {
  /** The path, or the caller's name for a buffer; used in every error message. */
  name: string;
  format: ImageFormat;
  /** What sharp opens: the path itself (libvips reads it and can shrink JPEGs on load) or the bytes. */
  input: string | Buffer;
  /** Loads the whole file (once), for decoders that need the bytes in memory (HEIC, BMP). */
  bytes(): Promise<Buffer>;
}

const BUFFER_NAME = '<buffer>';

function fsError(err: unknown, path: string): ClipdexError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new ClipdexError('FILE_NOT_FOUND', `File not found: ${path}`, { cause: err, details: { file: path } });
    case 'EACCES':
    case 'EPERM':
      return new ClipdexError('FILE_UNREADABLE', `Permission denied reading ${path}`, { cause: err, details: { file: path } });
    case 'EISDIR':
      return new ClipdexError('NOT_AN_IMAGE', `${path} is a directory, not an image`, { cause: err, details: { file: path } });
    default:
      return new ClipdexError('FILE_UNREADABLE', `Cannot read ${path}: ${(err as Error)?.message ?? String(err)}`, {
        cause: err,
        details: { file: path, errno: code },
      });
  }
}

function classify(head: Uint8Array, name: string): ImageFormat {
  const detected = detectImageFormat(head);
  if (!detected) {
    throw new ClipdexError('NOT_AN_IMAGE', `${name} is not an image (its first bytes match no image format)`, {
      details: { file: name },
    });
  }
  if (!detected.supported) {
    throw new ClipdexError('UNSUPPORTED_FORMAT', `${name} is a ${detected.format.toUpperCase()} image, which clipdex cannot decode`, {
      details: { file: name, format: detected.format },
    });
  }
  return detected.format;
}

async function fromPath(path: string): Promise<ImageSource> {
  let head: Buffer;
  try {
    const fh = await open(path, 'r');
    try {
      const stat = await fh.stat();
      if (stat.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      if (stat.size === 0) {
        throw new ClipdexError('EMPTY_FILE', `${path} is empty (0 bytes)`, { details: { file: path } });
      }
      head = Buffer.alloc(Math.min(SNIFF_BYTES, stat.size));
      await fh.read(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw err instanceof ClipdexError ? err : fsError(err, path);
  }
  const format = classify(head, path);
  let bytes: Promise<Buffer> | undefined;
  return {
    name: path,
    format,
    input: path,
    // Read once: a BMP's header probe and its decode share the same bytes.
    bytes: () => (bytes ??= readFile(path).catch((err: unknown) => Promise.reject(fsError(err, path)))),
  };
}

function fromBytes(bytes: Uint8Array, name: string): ImageSource {
  if (bytes.length === 0) throw new ClipdexError('EMPTY_FILE', `${name} is empty (0 bytes)`, { details: { file: name } });
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { name, format: classify(buf.subarray(0, SNIFF_BYTES), name), input: buf, bytes: async () => buf };
}

/** Checks the input and detects its format from magic bytes; reads at most 64 bytes of a file. */
export async function openImageSource(input: ImageInput, name?: string): Promise<ImageSource> {
  if (typeof input === 'string') return fromPath(input);
  if (input instanceof Uint8Array) return fromBytes(input, name ?? BUFFER_NAME);
  throw new ClipdexError('INVALID_ARGUMENT', 'An image input must be a file path or a Buffer');
}
