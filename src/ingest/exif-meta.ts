/**
 * Capture date and camera from EXIF, for filters and display. Missing, partial or corrupt EXIF
 * gives nulls, never an exception: metadata is a bonus, and a photo without it still indexes.
 * The file's mtime is never used as a stand-in date; the caller can see `source` and decide.
 */
import { open } from 'node:fs/promises';
import exifr from 'exifr';
import { errorMessage } from '../errors.js';

export type CaptureDateSource = 'DateTimeOriginal' | 'CreateDate';

export interface CaptureDate {
  /** Wall-clock time on the camera, ISO 8601 without a zone: '2007-08-06T10:29:13' (or with '.250' when sub-seconds are known). */
  local: string;
  /** The UTC offset recorded with it ('+02:00'), or null when the camera did not record one. */
  offset: string | null;
  /**
   * Milliseconds since the epoch. With an offset: the true instant. Without one: the wall-clock
   * reading taken as if it were UTC ("floating" time), so sorting and date filters by the
   * camera's own calendar day still work; `offset` null says which it is.
   */
  epochMs: number;
  source: CaptureDateSource;
}

export interface ExifMeta {
  takenAt: CaptureDate | null;
  cameraMake: string | null;
  cameraModel: string | null;
  /** Why nothing could be read (unknown container, corrupt EXIF); absent when parsing went fine. */
  warning?: string;
}

const EMPTY: ExifMeta = { takenAt: null, cameraMake: null, cameraModel: null };

const PICK = [
  'DateTimeOriginal',
  'CreateDate',
  'OffsetTimeOriginal',
  'OffsetTimeDigitized',
  'SubSecTimeOriginal',
  'SubSecTimeDigitized',
  'Make',
  'Model',
];

// EXIF dates are 'YYYY:MM:DD HH:MM:SS'; some writers use '-' in the date or a 'T'.
const EXIF_DATE = /^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})/;
const OFFSET = /^([+-])(\d{2}):(\d{2})$/;

function text(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  // Camera strings are NUL-padded fixed fields in some firmwares.
  const cleaned = value.replace(/\0+/g, '').trim();
  return cleaned === '' ? null : cleaned;
}

/** 'YYYY:MM:DD HH:MM:SS' + optional sub-seconds and offset → CaptureDate, or null for an unset or impossible date. */
export function parseExifDate(value: unknown, offsetValue: unknown, subSecValue: unknown, source: CaptureDateSource): CaptureDate | null {
  const raw = text(value);
  const m = raw ? EXIF_DATE.exec(raw) : null;
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  // Cameras with an unset clock write '0000:00:00 00:00:00'; Date.UTC would roll bad fields over silently.
  if (y < 1800 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return null;
  const sub = text(typeof subSecValue === 'number' ? String(subSecValue) : subSecValue);
  const ms = sub && /^\d+$/.test(sub) ? Math.round(Number(`0.${sub}`) * 1000) % 1000 : 0;
  const floating = Date.UTC(y, mo - 1, d, h, mi, Math.min(s, 59), ms);
  const check = new Date(floating);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== mo - 1) return null;
  const offset = text(offsetValue);
  const matched = offset ? OFFSET.exec(offset) : null;
  // Real offsets run from -12:00 to +14:00.
  const om = matched && Number(matched[2]) <= 14 && Number(matched[3]) < 60 ? matched : null;
  const offsetMinutes = om ? (om[1] === '-' ? -1 : 1) * (Number(om[2]) * 60 + Number(om[3])) : null;
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const local = `${pad(y, 4)}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(Math.min(s, 59))}${ms ? `.${pad(ms, 3)}` : ''}`;
  return {
    local,
    offset: om ? offset : null,
    epochMs: offsetMinutes === null ? floating : floating - offsetMinutes * 60_000,
    source,
  };
}

function startsWithText(bytes: Uint8Array, text: string, at = 0): boolean {
  return bytes.length >= at + text.length && [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));
}

function isWebp(bytes: Uint8Array): boolean {
  return startsWithText(bytes, 'RIFF') && startsWithText(bytes, 'WEBP', 8);
}

/**
 * WebP keeps EXIF in a RIFF 'EXIF' chunk that exifr does not look for; the chunk holds a TIFF
 * block (sometimes behind an 'Exif\0\0' prefix), which exifr reads directly.
 */
export function webpExifBlock(bytes: Uint8Array): Uint8Array | null {
  if (!isWebp(bytes)) return null;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 12; at + 8 <= buf.length; ) {
    const id = buf.toString('latin1', at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    if (id === 'EXIF') {
      let block = buf.subarray(at + 8, Math.min(at + 8 + size, buf.length));
      if (block.toString('latin1', 0, 6) === 'Exif\0\0') block = block.subarray(6);
      return block.length > 8 ? block : null;
    }
    at += 8 + size + (size & 1);
  }
  return null;
}

/**
 * Files up to this size are read whole and parsed from memory. exifr can read a path itself,
 * in chunks, but leaves its file handle open when parsing fails (an empty file, for one);
 * only files larger than this (big TIFFs, whose IFDs may sit anywhere) are left to it.
 */
const READ_WHOLE_BYTES = 32 * 1024 * 1024;

async function exifSource(path: string): Promise<string | Uint8Array | null> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size === 0) throw new Error(`${path} is empty`);
    if (size > READ_WHOLE_BYTES) {
      const head = Buffer.alloc(12);
      await fh.read(head, 0, 12, 0);
      // A WebP this large is rare enough to skip rather than scan for its chunk.
      return isWebp(head) ? null : path;
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Capture date and camera from a file path or the file's bytes. Never throws. */
export async function readExifMeta(input: string | Uint8Array): Promise<ExifMeta> {
  try {
    let source = typeof input === 'string' ? await exifSource(input) : input;
    if (source === null) return EMPTY;
    if (typeof source !== 'string') {
      if (isWebp(source)) source = webpExifBlock(source);
      // GIF and BMP have nowhere to keep EXIF: nothing to say about them.
      else if (startsWithText(source, 'GIF8') || startsWithText(source, 'BM')) source = null;
      if (source === null) return EMPTY;
    }
    // reviveValues: false keeps dates as the camera's text: exifr would read them as local time of this machine.
    const tags = (await exifr.parse(source as string | Buffer, { pick: PICK, reviveValues: false })) as Record<string, unknown> | undefined;
    if (!tags) return EMPTY;
    const takenAt =
      parseExifDate(tags.DateTimeOriginal, tags.OffsetTimeOriginal, tags.SubSecTimeOriginal, 'DateTimeOriginal') ??
      parseExifDate(tags.CreateDate, tags.OffsetTimeDigitized, tags.SubSecTimeDigitized, 'CreateDate');
    return { takenAt, cameraMake: text(tags.Make), cameraModel: text(tags.Model) };
  } catch (err) {
    return { ...EMPTY, warning: `no EXIF read: ${errorMessage(err)}` };
  }
}
