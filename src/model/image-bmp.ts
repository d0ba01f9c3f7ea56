/**
 * A small BMP reader: libvips (and so sharp) has no BMP loader without ImageMagick.
 * Only uncompressed BI_RGB files with 1, 4, 8, 24 or 32 bits per pixel are read: that covers
 * what Paint, scanners and old cameras write. RLE and bit-field variants are refused with
 * UNSUPPORTED_FORMAT rather than decoded half right.
 */
import { ClipdexError } from '../errors.js';

export interface BmpHeader {
  width: number;
  height: number;
  bitsPerPixel: number;
  compression: number;
  topDown: boolean;
  dataOffset: number;
  paletteOffset: number;
  paletteSize: number;
}

export interface RawRgb {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

const BI_RGB = 0;
const SUPPORTED_BPP = new Set([1, 4, 8, 24, 32]);

function fail(name: string, why: string): ClipdexError {
  return new ClipdexError('DECODE_FAILED', `Cannot decode BMP ${name}: ${why}`, { details: { file: name } });
}

export function readBmpHeader(buf: Buffer, name: string): BmpHeader {
  if (buf.length < 30 || buf.toString('latin1', 0, 2) !== 'BM') throw fail(name, 'header is truncated');
  const dibSize = buf.readUInt32LE(14);
  if (dibSize < 40) {
    throw new ClipdexError('UNSUPPORTED_FORMAT', `Cannot decode ${name}: OS/2 BMP headers (${dibSize} bytes) are not supported`, {
      details: { file: name, format: 'bmp' },
    });
  }
  if (buf.length < 14 + 40) throw fail(name, 'header is truncated');
  const width = buf.readInt32LE(18);
  const rawHeight = buf.readInt32LE(22);
  const bitsPerPixel = buf.readUInt16LE(28);
  const compression = buf.readUInt32LE(30);
  const colorsUsed = buf.readUInt32LE(46);
  if (width <= 0 || rawHeight === 0) throw fail(name, `invalid dimensions ${width}x${rawHeight}`);
  return {
    width,
    height: Math.abs(rawHeight),
    bitsPerPixel,
    compression,
    topDown: rawHeight < 0,
    dataOffset: buf.readUInt32LE(10),
    paletteOffset: 14 + dibSize,
    paletteSize: bitsPerPixel <= 8 ? colorsUsed || 1 << bitsPerPixel : 0,
  };
}

/** Decodes to packed 8-bit RGB, top row first. Call `readBmpHeader` first to check the size. */
export function decodeBmp(buf: Buffer, name: string, header = readBmpHeader(buf, name)): RawRgb {
  const { width, height, bitsPerPixel: bpp, compression } = header;
  if (compression !== BI_RGB || !SUPPORTED_BPP.has(bpp)) {
    throw new ClipdexError(
      'UNSUPPORTED_FORMAT',
      `Cannot decode ${name}: BMP with compression ${compression} and ${bpp} bits per pixel is not supported (only uncompressed 1/4/8/24/32-bit)`,
      { details: { file: name, format: 'bmp', compression, bitsPerPixel: bpp } },
    );
  }
  const stride = Math.ceil((width * bpp) / 32) * 4;
  if (header.dataOffset + stride * height > buf.length) throw fail(name, 'pixel data is truncated');
  const palette = header.paletteSize > 0 ? buf.subarray(header.paletteOffset, header.paletteOffset + header.paletteSize * 4) : null;
  if (palette && palette.length < header.paletteSize * 4) throw fail(name, 'palette is truncated');

  const out = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = header.dataOffset + (header.topDown ? y : height - 1 - y) * stride;
    let o = y * width * 3;
    for (let x = 0; x < width; x++, o += 3) {
      if (bpp >= 24) {
        // Stored BGR(X); the fourth byte of 32-bit BI_RGB is unused padding by definition.
        const p = row + x * (bpp / 8);
        out[o] = buf[p + 2]!;
        out[o + 1] = buf[p + 1]!;
        out[o + 2] = buf[p]!;
      } else {
        const bit = x * bpp;
        const byte = buf[row + (bit >> 3)]!;
        const index = (byte >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        if (index >= header.paletteSize) throw fail(name, `palette index ${index} out of range`);
        out[o] = palette![index * 4 + 2]!;
        out[o + 1] = palette![index * 4 + 1]!;
        out[o + 2] = palette![index * 4]!;
      }
    }
  }
  return { data: out, width, height, channels: 3 };
}
