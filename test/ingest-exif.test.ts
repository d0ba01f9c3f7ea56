import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp, { type Exif } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExifDate, readExifMeta, webpExifBlock } from '../src/ingest/exif-meta.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const edge = sharedPath('photos', 'edge');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-exif-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function image(format: 'jpeg' | 'png' | 'webp', exif?: Exif): Promise<Buffer> {
  let s = sharp({ create: { width: 16, height: 12, channels: 3, background: '#3a7' } });
  s = format === 'jpeg' ? s.jpeg() : format === 'png' ? s.png() : s.webp();
  return (exif ? s.withExif(exif) : s).toBuffer();
}

describe.skipIf(!edge)(`camera EXIF in ../shared/photos/edge ${edge ? '' : NEEDS_SHARED}`, () => {
  // What the two files carry (read with exifr and confirmed against the raw IFD text).
  const cases = [
    { file: 'Dune.jpg', local: '2007-08-06T10:29:13', make: 'Canon', model: 'Canon EOS DIGITAL REBEL' },
    { file: 'Storm.jpg', local: '2008-04-20T19:12:06', make: 'Canon', model: 'Canon EOS 400D DIGITAL' },
  ];
  for (const c of cases) {
    it(`${c.file}: DateTimeOriginal (no offset recorded) and the camera, from the path and from the bytes`, async () => {
      const path = join(edge!, c.file);
      const fromPath = await readExifMeta(path);
      expect(fromPath).toEqual({
        takenAt: { local: c.local, offset: null, epochMs: Date.parse(`${c.local}Z`), source: 'DateTimeOriginal' },
        cameraMake: c.make,
        cameraModel: c.model,
      });
      const bytes = await readFile(path);
      expect(await readExifMeta(bytes)).toEqual(fromPath);
      // The date text really is in the file's EXIF block, in EXIF's own notation.
      const raw = (await sharp(bytes).metadata()).exif!.toString('latin1');
      expect(raw).toContain(c.local.replace(/-/g, ':').replace('T', ' '));
    });
  }

  it('photos without EXIF give nulls and no warning; broken files give nulls and a warning', async () => {
    const noExif = ['LadyBird.jpg', 'orientation_0.jpg', 'logo.png', 'chelsea.heic', 'coffee.avif', 'multipage.tif', 'no_time_for_that_tiny.gif', 'yellow_rose.lossy-with-alpha.webp'];
    for (const f of noExif) {
      expect(await readExifMeta(join(edge!, f)), f).toEqual({ takenAt: null, cameraMake: null, cameraModel: null });
    }
    for (const f of ['not-an-image.jpg', 'empty.png']) {
      const meta = await readExifMeta(join(edge!, f));
      expect(meta, f).toMatchObject({ takenAt: null, cameraMake: null, cameraModel: null });
      expect(meta.warning, f).toMatch(/no EXIF read/);
    }
    expect(await readExifMeta(join(edge!, 'truncated.jpg'))).toMatchObject({ takenAt: null, cameraMake: null });
  });
});

describe('EXIF written by sharp', () => {
  it('DateTimeOriginal with its offset and sub-seconds gives the true instant', async () => {
    const bytes = await image('jpeg', {
      IFD0: { Make: 'TestCam', Model: 'T-1000' },
      IFD2: { DateTimeOriginal: '2021:03:04 05:06:07', OffsetTimeOriginal: '+05:30', SubSecTimeOriginal: '25', DateTimeDigitized: '1999:01:01 00:00:00' },
    });
    const meta = await readExifMeta(bytes);
    expect(meta).toEqual({
      takenAt: { local: '2021-03-04T05:06:07.250', offset: '+05:30', epochMs: Date.parse('2021-03-04T05:06:07.250+05:30'), source: 'DateTimeOriginal' },
      cameraMake: 'TestCam',
      cameraModel: 'T-1000',
    });
    const path = join(tmp, 'offset.jpg');
    await writeFile(path, bytes);
    expect(await readExifMeta(path)).toEqual(meta);
  });

  it('falls back to CreateDate (DateTimeDigitized) when DateTimeOriginal is missing or unset, never to the file time', async () => {
    const digitizedOnly = await image('jpeg', { IFD2: { DateTimeDigitized: '2020:02:29 23:59:58', OffsetTimeDigitized: '-03:00' } });
    expect((await readExifMeta(digitizedOnly)).takenAt).toEqual({
      local: '2020-02-29T23:59:58',
      offset: '-03:00',
      epochMs: Date.parse('2020-02-29T23:59:58-03:00'),
      source: 'CreateDate',
    });
    const unsetClock = await image('jpeg', { IFD2: { DateTimeOriginal: '0000:00:00 00:00:00', DateTimeDigitized: '2019:12:31 08:00:00' } });
    expect((await readExifMeta(unsetClock)).takenAt).toMatchObject({ local: '2019-12-31T08:00:00', source: 'CreateDate' });
    const impossible = await image('jpeg', { IFD0: { Make: 'X' }, IFD2: { DateTimeOriginal: '2021:02:30 10:00:00' } });
    expect(await readExifMeta(impossible)).toEqual({ takenAt: null, cameraMake: 'X', cameraModel: null });
    expect(await readExifMeta(await image('jpeg'))).toEqual({ takenAt: null, cameraMake: null, cameraModel: null });
  });

  it('reads PNG eXIf and WebP EXIF chunks (exifr alone does not read WebP)', async () => {
    const exif = { IFD0: { Make: 'Pixel', Model: '8' }, IFD2: { DateTimeOriginal: '2024:07:14 18:30:00' } };
    for (const format of ['png', 'webp'] as const) {
      const bytes = await image(format, exif);
      const path = join(tmp, `with-exif.${format}`);
      await writeFile(path, bytes);
      for (const input of [bytes, path]) {
        expect(await readExifMeta(input), `${format} ${typeof input}`).toMatchObject({
          takenAt: { local: '2024-07-14T18:30:00', offset: null, source: 'DateTimeOriginal' },
          cameraMake: 'Pixel',
          cameraModel: '8',
        });
      }
    }
    expect(webpExifBlock(await image('webp'))).toBeNull();
    expect(webpExifBlock(await image('jpeg', exif))).toBeNull();
  });

  it('never throws on corrupt EXIF, garbage, empty input or a missing file', async () => {
    const jpeg = await image('jpeg');
    // An APP1 'Exif' segment whose TIFF header points its first IFD far outside the segment.
    const tiff = Buffer.from([0x49, 0x49, 0x2a, 0x00, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4]);
    const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0, payload.length + 2]), payload]);
    const corrupt = Buffer.concat([jpeg.subarray(0, 2), app1, jpeg.subarray(2)]);
    for (const input of [corrupt, Buffer.from('not an image at all'), Buffer.alloc(0), join(tmp, 'missing.jpg')]) {
      const meta = await readExifMeta(input);
      expect(meta).toMatchObject({ takenAt: null, cameraMake: null, cameraModel: null });
    }
    expect((await readExifMeta(join(tmp, 'missing.jpg'))).warning).toContain('missing.jpg');
  });

  it('parseExifDate accepts EXIF and dashed notation and rejects impossible fields', () => {
    expect(parseExifDate('2001-02-03 04:05:06', null, null, 'CreateDate')?.local).toBe('2001-02-03T04:05:06');
    expect(parseExifDate('2001:02:03 04:05:06', '+25:99', null, 'DateTimeOriginal')?.offset).toBeNull();
    for (const bad of ['2001:13:01 00:00:00', '2001:01:01 24:00:00', '    :  :     :  :  ', '', 42, undefined]) {
      expect(parseExifDate(bad, null, null, 'DateTimeOriginal'), String(bad)).toBeNull();
    }
  });
});
