/**
 * Pulls a model's files from a Hugging Face-style hub into a directory: resumable, verified, atomic.
 *
 * Every file streams into a partial owned by this process (`<file>.partial-<pid>`), is hashed while it
 * streams and is renamed into place only after its sha256/size check passes, so a final file is always
 * complete. An interrupted download rests as `<file>.partial` and the next pull resumes it with a Range
 * request. Concurrent pulls into one directory never share a partial: a pull adopts a resting partial,
 * or one whose owning pid is dead, by renaming it to its own name (rename is atomic, so exactly one
 * pull wins it); partials of live processes are left alone. Two pulls may then fetch the same file
 * twice, but each publishes only a copy it verified itself.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClipdexError, errorMessage } from '../errors.js';
import { claimPartial, hashFile, removeLeftoverPartials, restingPartial, sizeIfFile, withInProcessLock, workingPartial } from './download-partials.js';
import { ProgressReporter, type PullProgressEvent } from './download-progress.js';
import { COMPLETE_MARKER, normalizeEndpoint, validateSource } from './download-source.js';
import type { ModelSource, RemoteFile } from './manifest.js';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
export { COMPLETE_MARKER };

export type { PullPhase, PullProgressEvent } from './download-progress.js';

export interface PullOptions {
  targetDir: string;
  /** Defaults to `hubEndpoint()`. */
  endpoint?: string;
  onProgress?: (event: PullProgressEvent) => void;
  signal?: AbortSignal;
  fetchImpl?: typeof fetch;
  /** Retries per file for transient failures (HTTP 5xx/429, dropped connections). Default 3. */
  retries?: number;
  /** First retry delay, doubled on each further retry. Default 1000 ms. */
  retryDelayMs?: number;
  /** Minimum time between two 'progress' events. Default 100 ms. */
  progressIntervalMs?: number;
}

export interface PulledFile {
  path: string;
  size: number;
  sha256: string;
  action: 'skipped' | 'downloaded' | 'resumed';
}

export interface PullResult {
  targetDir: string;
  files: PulledFile[];
}

export interface PullMarker {
  version: 1;
  repo: string;
  revision: string;
  completedAt: string;
  files: { path: string; size: number; sha256: string }[];
}

/** `$HF_ENDPOINT` or https://huggingface.co, without a trailing slash. */
export function hubEndpoint(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const raw = env.HF_ENDPOINT?.trim();
  return (raw ? raw : DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
}

/** `${endpoint}/${repo}/resolve/${revision}/${path}`, each part percent-encoded. */
export function hubFileUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${encodePath(repo)}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

/**
 * Downloads every file of `source` into `options.targetDir`, skipping files already there and
 * verified, then writes the completion marker.
 */
export async function pullModel(source: ModelSource, options: PullOptions): Promise<PullResult> {
  const files = validateSource(source);
  const endpoint = normalizeEndpoint(options.endpoint ?? hubEndpoint());
  const targetDir = resolve(options.targetDir);
  const signal = options.signal;
  signal?.throwIfAborted();

  const ctx: PullContext = {
    source,
    files,
    finals: files.map((f) => join(targetDir, ...f.path.split('/'))),
    endpoint,
    targetDir,
    fetch: options.fetchImpl ?? fetch,
    signal,
    retries: options.retries ?? 3,
    retryDelayMs: options.retryDelayMs ?? 1000,
    progress: new ProgressReporter(files, options.onProgress, options.progressIntervalMs ?? 100),
    markerRemoved: false,
  };
  await mkdir(targetDir, { recursive: true });
  await probeMetadata(ctx);

  const pulled: PulledFile[] = [];
  for (let i = 0; i < files.length; i++) {
    const finalPath = ctx.finals[i]!;
    pulled.push(await withInProcessLock(finalPath, () => pullOne(ctx, i)));
  }
  await writePullMarker(targetDir, {
    version: 1,
    repo: source.repo,
    revision: source.revision,
    completedAt: new Date().toISOString(),
    files: pulled.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
  });
  return { targetDir, files: pulled };
}

/**
 * True when `targetDir` holds a finished pull of `source`: the marker names the same repo and
 * revision, agrees with every sha256/size the source gives, and each file is there with its recorded
 * size. Files are not re-hashed (that is `pullModel`'s job), so this is cheap enough for every start.
 */
export async function isPulled(targetDir: string, source: ModelSource): Promise<boolean> {
  const files = validateSource(source);
  const marker = await readPullMarker(targetDir);
  if (!marker || marker.repo !== source.repo || marker.revision !== source.revision) return false;
  const byPath = new Map(marker.files.map((f) => [f.path, f]));
  for (const file of files) {
    const entry = byPath.get(file.path);
    if (!entry) return false;
    if (file.sha256 !== undefined && entry.sha256 !== file.sha256) return false;
    if (file.size !== undefined && entry.size !== file.size) return false;
    const st = await stat(join(resolve(targetDir), ...file.path.split('/'))).catch(() => null);
    if (!st?.isFile() || st.size !== entry.size) return false;
  }
  return true;
}

/** The completion marker of `targetDir`, or null when absent or unreadable. */
export async function readPullMarker(targetDir: string): Promise<PullMarker | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(targetDir, COMPLETE_MARKER), 'utf8'));
  } catch {
    return null;
  }
  const m = parsed as Partial<PullMarker> | null;
  const ok =
    m !== null &&
    typeof m === 'object' &&
    m.version === 1 &&
    typeof m.repo === 'string' &&
    typeof m.revision === 'string' &&
    Array.isArray(m.files) &&
    m.files.every((f) => typeof f?.path === 'string' && typeof f.size === 'number' && typeof f.sha256 === 'string');
  return ok ? (m as PullMarker) : null;
}

// ---------------------------------------------------------------------------------------------
// One file

interface PullContext {
  source: ModelSource;
  files: RemoteFile[];
  finals: string[];
  endpoint: string;
  targetDir: string;
  fetch: typeof fetch;
  signal: AbortSignal | undefined;
  retries: number;
  retryDelayMs: number;
  progress: ProgressReporter;
  markerRemoved: boolean;
}

interface Transfer {
  /** Offset the bytes of this transfer were appended at (0: fresh download). */
  startedAt: number;
  size: number;
  sha256: string;
  /** What the server said the whole file measures. */
  expectedSize: number | undefined;
}

/** A failure worth retrying: the partial stays and the next attempt resumes it. */
class TransientError extends Error {
  constructor(
    readonly stage: 'connect' | 'body' | 'http',
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

async function pullOne(ctx: PullContext, index: number): Promise<PulledFile> {
  const file = ctx.files[index]!;
  const finalPath = ctx.finals[index]!;
  ctx.signal?.throwIfAborted();

  const existing = await checkExisting(finalPath, file);
  if (existing.state === 'valid') {
    ctx.progress.skipped(index, existing.size);
    return { path: file.path, size: existing.size, sha256: existing.sha256, action: 'skipped' };
  }
  if (!ctx.markerRemoved) {
    // A finished-pull marker must not outlive a file being replaced under it.
    await rm(join(ctx.targetDir, COMPLETE_MARKER), { force: true });
    ctx.markerRemoved = true;
  }
  await mkdir(dirname(finalPath), { recursive: true });
  const note = existing.state === 'invalid' ? `${file.path} is already there but ${existing.reason}; downloading it again` : undefined;
  return download(ctx, index, note);
}

type Existing =
  | { state: 'missing' }
  | { state: 'invalid'; reason: string }
  | { state: 'valid'; size: number; sha256: string };

async function checkExisting(finalPath: string, file: RemoteFile): Promise<Existing> {
  const st = await stat(finalPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!st) return { state: 'missing' };
  if (!st.isFile()) {
    throw new ClipdexError('INVALID_ARGUMENT', `${finalPath} exists and is not a regular file; move it away and pull again.`, {
      details: { path: finalPath },
    });
  }
  if (file.size !== undefined && st.size !== file.size) {
    return { state: 'invalid', reason: `has ${st.size} bytes instead of ${file.size}` };
  }
  // The marker records a hash for every file, so a file without a published hash is hashed too.
  const sha256 = await hashFile(createHash('sha256'), finalPath);
  if (file.sha256 !== undefined && sha256 !== file.sha256) {
    return { state: 'invalid', reason: `its sha256 is ${sha256}, not ${file.sha256}` };
  }
  return { state: 'valid', size: st.size, sha256 };
}

async function download(ctx: PullContext, index: number, note: string | undefined): Promise<PulledFile> {
  const file = ctx.files[index]!;
  const finalPath = ctx.finals[index]!;
  const work = workingPartial(finalPath);
  let offset = await claimPartial(finalPath, work);
  let attempt = 0;
  let restartedAfterMismatch = false;
  let resumed = false;
  ctx.progress.emit('start', index, 0, note);

  try {
    for (;;) {
      try {
        const t = await transfer(ctx, index, work, offset);
        if (t.startedAt > 0) resumed = true;
        if (t.expectedSize !== undefined && t.size < t.expectedSize) {
          throw new TransientError('body', `the transfer ended after ${t.size} of ${t.expectedSize} bytes`);
        }
        const problem = verificationProblem(file, t);
        if (problem) {
          await rm(work, { force: true });
          // A resumed file mixes old and new bytes; the old ones may be what is wrong, so one clean retry.
          if (t.startedAt > 0 && !restartedAfterMismatch) {
            restartedAfterMismatch = true;
            offset = 0;
            ctx.progress.emit('start', index, 0, `the resumed download of ${file.path} failed verification; downloading it from the start`);
            continue;
          }
          throw new ClipdexError(
            'CHECKSUM_MISMATCH',
            `Downloaded ${file.path} from ${ctx.source.repo}@${ctx.source.revision} does not verify: ${problem.message}. ` +
              'The download was deleted; pull again, and if it keeps failing the manifest or the mirror is wrong.',
            { details: { file: file.path, expected: problem.expected, actual: problem.actual, url: fileUrl(ctx, file) } },
          );
        }
        await rename(work, finalPath);
        ctx.progress.verified(index, t.size);
        await removeLeftoverPartials(finalPath);
        return { path: file.path, size: t.size, sha256: t.sha256, action: resumed ? 'resumed' : 'downloaded' };
      } catch (err) {
        if (ctx.signal?.aborted || !(err instanceof TransientError) || attempt >= ctx.retries) throw err;
        attempt++;
        const delay = Math.max(ctx.retryDelayMs * 2 ** (attempt - 1), err.retryAfterMs ?? 0);
        offset = (await sizeIfFile(work)) ?? 0;
        ctx.progress.emit('progress', index, offset, `${err.message}; retrying in ${formatDelay(delay)} (${attempt}/${ctx.retries})`);
        await sleep(delay, undefined, { signal: ctx.signal });
      }
    }
  } catch (err) {
    // Whatever was received stays as the resting partial so the next pull, in any process, resumes it.
    await rename(work, restingPartial(finalPath)).catch(() => undefined);
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? err;
    throw publicError(err, ctx, file, attempt);
  }
}

async function transfer(ctx: PullContext, index: number, work: string, startOffset: number): Promise<Transfer> {
  const file = ctx.files[index]!;
  const url = fileUrl(ctx, file);
  let offset = startOffset;
  if (offset > 0 && file.size !== undefined) {
    if (offset === file.size) return completedPartial(work, offset, file.size);
    if (offset > file.size) {
      offset = 0;
      ctx.progress.emit('start', index, 0, `the partial download of ${file.path} is larger than the file; starting over`);
    }
  }

  for (;;) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'clipdex' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    let res: Response;
    try {
      res = await ctx.fetch(url, { headers, signal: ctx.signal, redirect: 'follow' });
    } catch (err) {
      throw connectError(err, ctx);
    }

    let expectedSize: number | undefined;
    if (res.status === 416 && offset > 0) {
      await res.body?.cancel().catch(() => undefined);
      const total = unsatisfiedRangeTotal(res.headers.get('content-range'));
      if (total === offset) return completedPartial(work, offset, total);
      offset = 0;
      ctx.progress.emit('start', index, 0, `the partial download of ${file.path} does not match the remote file; starting over`);
      continue;
    }
    if (res.status === 206 && offset > 0) {
      const range = contentRange(res.headers.get('content-range'));
      if (!range || range.start !== offset) {
        await res.body?.cancel().catch(() => undefined);
        offset = 0;
        ctx.progress.emit('start', index, 0, `the server answered a different range for ${file.path}; starting over`);
        continue;
      }
      expectedSize = range.total;
    } else if (res.status === 200) {
      if (offset > 0) {
        offset = 0;
        ctx.progress.emit('start', index, 0, `the server ignored the resume request for ${file.path}; starting over`);
      }
      expectedSize = identityLength(res);
    } else {
      await res.body?.cancel().catch(() => undefined);
      throw httpError(res, url, ctx, file);
    }
    if (expectedSize !== undefined) ctx.progress.setSize(index, expectedSize);

    const hash = createHash('sha256');
    if (offset > 0) {
      await hashFile(hash, work, offset);
      ctx.progress.emit('resumed', index, offset);
    }
    return { startedAt: offset, expectedSize, ...(await streamBody(ctx, index, res, work, offset, hash)) };
  }
}

/** Appends the body at `offset`, hashing as it goes; memory stays at one chunk whatever the file size. */
async function streamBody(
  ctx: PullContext,
  index: number,
  res: Response,
  work: string,
  offset: number,
  hash: Hash,
): Promise<{ size: number; sha256: string }> {
  if (!res.body) throw new TransientError('body', 'the server sent no body');
  const fh = await open(work, offset > 0 ? 'r+' : 'w');
  let position = offset;
  try {
    await fh.truncate(offset);
    const reader = res.body[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await reader.next();
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        throw new TransientError('body', `the connection dropped after ${position} bytes`, undefined, undefined, err);
      }
      if (next.done) break;
      const chunk = next.value;
      try {
        await fh.write(chunk, 0, chunk.length, position);
      } catch (err) {
        await reader.return?.().catch(() => undefined);
        throw new ClipdexError('DOWNLOAD_FAILED', `Could not write ${work}: ${errorMessage(err)}.`, { cause: err, details: { path: work } });
      }
      hash.update(chunk);
      position += chunk.length;
      ctx.progress.tick(index, position);
    }
    // Without this a power cut after the rename could leave a final file of zeros.
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { size: position, sha256: hash.digest('hex') };
}

async function completedPartial(work: string, size: number, expectedSize: number): Promise<Transfer> {
  return { startedAt: size, size, expectedSize, sha256: await hashFile(createHash('sha256'), work) };
}

function verificationProblem(file: RemoteFile, t: Transfer): { message: string; expected: string; actual: string } | null {
  if (file.sha256 !== undefined && t.sha256 !== file.sha256) {
    return { message: `expected sha256 ${file.sha256}, got ${t.sha256}`, expected: file.sha256, actual: t.sha256 };
  }
  if (file.size !== undefined && t.size !== file.size) {
    return { message: `expected ${file.size} bytes, got ${t.size}`, expected: String(file.size), actual: String(t.size) };
  }
  if (t.expectedSize !== undefined && t.size !== t.expectedSize) {
    return {
      message: `the server announced ${t.expectedSize} bytes but sent ${t.size}`,
      expected: String(t.expectedSize),
      actual: String(t.size),
    };
  }
  return null;
}

/** Atomically writes the completion marker; `models import` writes one too, for files it verified itself. */
export async function writePullMarker(targetDir: string, marker: PullMarker): Promise<void> {
  const path = join(targetDir, COMPLETE_MARKER);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(marker, null, 2)}\n`);
  await rename(tmp, path);
}

// ---------------------------------------------------------------------------------------------
// HTTP

function fileUrl(ctx: PullContext, file: RemoteFile): string {
  return hubFileUrl(ctx.endpoint, ctx.source.repo, ctx.source.revision, file.path);
}

/** Before any download starts, learn the sizes the manifest does not give, so totals are known. */
/**
 * Asks the hub what each file should be before downloading it. For LFS files (the weights) the real hub
 * answers the resolve URL with a redirect carrying `X-Linked-Etag` (the file's sha256) and `X-Linked-Size`,
 * as huggingface_hub reads them: with those, a download is verified even when the manifest lists no hash.
 * Failures here only cost the check; the GET that follows reports them properly.
 */
async function probeMetadata(ctx: PullContext): Promise<void> {
  for (let i = 0; i < ctx.files.length; i++) {
    const file = ctx.files[i]!;
    if (file.sha256 !== undefined && file.size !== undefined) continue;
    try {
      const res = await ctx.fetch(fileUrl(ctx, file), {
        method: 'HEAD',
        headers: { 'accept-encoding': 'identity', 'user-agent': 'clipdex' },
        signal: ctx.signal,
        redirect: 'manual',
      });
      const linked = linkedMetadata(res);
      const size = file.size ?? linked.size ?? (res.ok ? identityLength(res) : undefined);
      ctx.files[i] = { ...file, ...(file.sha256 ?? linked.sha256 ? { sha256: file.sha256 ?? linked.sha256 } : {}), ...(size !== undefined ? { size } : {}) };
      if (size !== undefined) ctx.progress.setSize(i, size);
    } catch {
      ctx.signal?.throwIfAborted();
      const local = await sizeIfFile(ctx.finals[i]!);
      if (local !== undefined) ctx.progress.setSize(i, local);
    }
  }
}

function linkedMetadata(res: Response): { sha256?: string; size?: number } {
  const etag = res.headers.get('x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
  const size = res.headers.get('x-linked-size');
  return {
    ...(etag && /^[0-9a-f]{64}$/.test(etag) ? { sha256: etag } : {}),
    ...(size && /^\d+$/.test(size) ? { size: Number(size) } : {}),
  };
}

/** Content-Length when it counts the file's own bytes (not a compressed encoding of them). */
function identityLength(res: Response): number | undefined {
  const encoding = res.headers.get('content-encoding');
  if (encoding && encoding !== 'identity') return undefined;
  const text = res.headers.get('content-length');
  return text !== null && /^\d+$/.test(text) ? Number(text) : undefined;
}

function contentRange(header: string | null): { start: number; total: number | undefined } | null {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim()) : null;
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

function unsatisfiedRangeTotal(header: string | null): number | undefined {
  const m = header ? /^bytes \*\/(\d+)$/.exec(header.trim()) : null;
  return m ? Number(m[1]) : undefined;
}

/** Codes of failures that a second try can plausibly fix; refusals and DNS failures mean offline. */
const TRANSIENT_CONNECT_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function connectError(err: unknown, ctx: PullContext): Error {
  if (ctx.signal?.aborted) return err as Error;
  const code = errorCode(err);
  if (code && TRANSIENT_CONNECT_CODES.has(code)) {
    return new TransientError('connect', `the connection to ${ctx.endpoint} failed (${code})`, undefined, undefined, err);
  }
  return offlineError(ctx, err, code);
}

function offlineError(ctx: PullContext, cause: unknown, code: string | undefined): ClipdexError {
  return new ClipdexError(
    'OFFLINE',
    `The model hub could not be reached at ${ctx.endpoint}${code ? ` (${code})` : ''}. ` +
      'Check your internet connection, or set HF_ENDPOINT to a reachable mirror, ' +
      `or download the files of ${ctx.source.repo} (revision ${ctx.source.revision}) on another machine ` +
      'and run `clipdex models import <dir>`.',
    { cause, details: { endpoint: ctx.endpoint, code } },
  );
}

/** undici puts the socket error in `cause`, sometimes wrapped in an AggregateError (one per address). */
function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const rec = e as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (typeof rec.code === 'string') return rec.code;
    const first = Array.isArray(rec.errors) ? (rec.errors[0] as { code?: unknown } | undefined) : undefined;
    if (typeof first?.code === 'string') return first.code;
    e = rec.cause;
  }
  return undefined;
}

function httpError(res: Response, url: string, ctx: PullContext, file: RemoteFile): Error {
  const status = res.status;
  if (status >= 500 || status === 429 || status === 408) {
    return new TransientError('http', `${url} answered HTTP ${status}`, status, retryAfterMs(res.headers.get('retry-after')));
  }
  const why =
    status === 404
      ? `no such file or revision (${file.path} at revision ${ctx.source.revision} of ${ctx.source.repo})`
      : status === 401 || status === 403
        ? 'access denied: the repository may be private or gated, and clipdex does not send credentials'
        : `unexpected status ${res.statusText || status}`;
  return new ClipdexError('DOWNLOAD_FAILED', `Downloading ${url} failed with HTTP ${status}: ${why}.`, {
    details: { url, status, file: file.path },
  });
}

/** A bounded Retry-After, so a hostile or confused server cannot park a pull for hours. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = /^\d+$/.test(header.trim()) ? Number(header.trim()) : (Date.parse(header) - Date.now()) / 1000;
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 60) * 1000 : undefined;
}

function publicError(err: unknown, ctx: PullContext, file: RemoteFile, attempts: number): unknown {
  if (!(err instanceof TransientError)) return err;
  const url = fileUrl(ctx, file);
  const tries = `${attempts + 1} attempt${attempts === 0 ? '' : 's'}`;
  if (err.stage === 'connect') return offlineError(ctx, err, errorCode(err));
  if (err.stage === 'http') {
    return new ClipdexError('DOWNLOAD_FAILED', `Downloading ${url} failed: the server answered HTTP ${err.status} (${tries}). Try again later.`, {
      cause: err,
      details: { url, status: err.status, file: file.path },
    });
  }
  return new ClipdexError(
    'DOWNLOAD_FAILED',
    `Downloading ${url} was interrupted: ${err.message} (${tries}). What arrived is kept; pull again to resume.`,
    { cause: err, details: { url, file: file.path } },
  );
}

function formatDelay(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
