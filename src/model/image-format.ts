/**
 * Image format detection from the first bytes of a file. Extensions lie (a text file
 * named .jpg, a HEIC saved as .jpg by a phone), so only magic bytes decide.
 */

/** Formats we can turn into pixels. */
export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'bmp' | 'heic' | 'avif';

/** Recognised image formats that no decoder in this build reads. */
export type UnsupportedImageFormat = 'jxl' | 'jp2' | 'psd';

export type DetectedFormat =
  | { supported: true; format: ImageFormat }
  | { supported: false; format: UnsupportedImageFormat };

/** How many leading bytes `detectImageFormat` needs to see every signature it knows. */
export const SNIFF_BYTES = 64;

const HEIC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs']);
const AVIF_BRANDS = new Set(['avif', 'avis']);
// Generic HEIF brands: the codec is named only by the compatible brands.
const GENERIC_HEIF_BRANDS = new Set(['mif1', 'msf1', 'mif2', 'miaf']);

function ascii(b: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...b.subarray(start, end));
}

function startsWith(b: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (b.length < at + sig.length) return false;
  return sig.every((v, i) => b[at + i] === v);
}

/** ISO-BMFF `ftyp` box: major brand at 8, compatible brands from 16 to the box end. */
function detectHeif(b: Uint8Array): DetectedFormat | null {
  if (b.length < 12 || ascii(b, 4, 8) !== 'ftyp') return null;
  const boxSize = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  const major = ascii(b, 8, 12);
  const brands = [major];
  for (let at = 16; at + 4 <= Math.min(boxSize, b.length); at += 4) brands.push(ascii(b, at, at + 4));
  if (brands.some((x) => AVIF_BRANDS.has(x))) return { supported: true, format: 'avif' };
  if (brands.some((x) => HEIC_BRANDS.has(x))) return { supported: true, format: 'heic' };
  // A generic HEIF without a known codec brand is most often HEVC from a phone: let the HEIC path try it.
  if (GENERIC_HEIF_BRANDS.has(major)) return { supported: true, format: 'heic' };
  // Other ftyp files (MP4, MOV, JPEG-2000 in a box…) are not still images we read.
  if (major === 'jp2 ' || major === 'jpx ') return { supported: false, format: 'jp2' };
  return null;
}

/** The format named by the file's magic bytes, or null when they match no image format. */
export function detectImageFormat(head: Uint8Array): DetectedFormat | null {
  if (startsWith(head, [0xff, 0xd8, 0xff])) return { supported: true, format: 'jpeg' };
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { supported: true, format: 'png' };
  if (ascii(head, 0, 4) === 'RIFF' && ascii(head, 8, 12) === 'WEBP') return { supported: true, format: 'webp' };
  if (ascii(head, 0, 6) === 'GIF87a' || ascii(head, 0, 6) === 'GIF89a') return { supported: true, format: 'gif' };
  if (startsWith(head, [0x49, 0x49, 0x2a, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2a])) {
    return { supported: true, format: 'tiff' };
  }
  // BigTIFF (version 43) is TIFF to libtiff too.
  if (startsWith(head, [0x49, 0x49, 0x2b, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2b])) {
    return { supported: true, format: 'tiff' };
  }
  if (ascii(head, 0, 2) === 'BM' && head.length >= 26) return { supported: true, format: 'bmp' };
  const heif = detectHeif(head);
  if (heif) return heif;
  if (startsWith(head, [0xff, 0x0a]) || startsWith(head, [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20])) {
    return { supported: false, format: 'jxl' };
  }
  if (startsWith(head, [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20]) || startsWith(head, [0xff, 0x4f, 0xff, 0x51])) {
    return { supported: false, format: 'jp2' };
  }
  if (ascii(head, 0, 4) === '8BPS') return { supported: false, format: 'psd' };
  return null;
}
