/**
 * The parts of the load test that are not assertions: photos of varied content, the request mix the
 * clients send (each request knows whether it is valid, and what its answer must satisfy), the per-kind
 * tally with latencies, the server's RSS from /proc, and what counts as an error line in its log.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import sharp from 'sharp';
import { Library } from '../../src/library/library.js';
import { seededRandom } from '../../src/util/seeded-random.js';
import { addSyntheticPhotos } from '../helpers/synthetic-photos.js';

export type Rng = () => number;

// ---- photos ----

export interface Photo {
  /** Relative to the watched folder: set-k/name. */
  rel: string;
  bytes: Buffer;
  format: 'jpeg' | 'png';
  /** The EXIF capture time written into a JPEG (ms since the epoch, as the server reads it: no offset → UTC). */
  takenAt: number | null;
}

/** Folders the bursts land in; the folder filter of the clients names them too (some before they exist). */
export const SETS = 8;
const DAY = 86_400_000;
const FIRST_DAY = Date.UTC(2015, 0, 1);

function exifDate(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}:${p(d.getUTCMonth() + 1)}:${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

/**
 * Photo `i`: a gradient of some hue, a few circles and bars drawn from its own seed, and i written in binary
 * as a strip of squares, so no two files share content (a shared hash would be "reused", not encoded). Sizes from
 * 160×120 to 480×360; about a third PNG, the rest JPEG with a capture date spread over ten years.
 */
export async function makePhoto(i: number, prefix: string): Promise<Photo> {
  const rng = seededRandom(1000 + i);
  const w = 160 + Math.floor(rng() * 320);
  const h = Math.round(w * (0.6 + rng() * 0.4));
  const hue = Math.floor(rng() * 360);
  const shapes: string[] = [];
  for (let k = 0, n = 2 + Math.floor(rng() * 5); k < n; k++) {
    const hh = (hue + 90 + Math.floor(rng() * 180)) % 360;
    const x = Math.floor(rng() * w);
    const y = Math.floor(rng() * h);
    shapes.push(
      rng() < 0.5
        ? `<circle cx="${x}" cy="${y}" r="${8 + Math.floor(rng() * (h / 3))}" fill="hsl(${hh},70%,${30 + Math.floor(rng() * 40)}%)"/>`
        : `<rect x="${x}" y="${y}" width="${10 + Math.floor(rng() * w) / 2}" height="${6 + Math.floor(rng() * 20)}" fill="hsl(${hh},60%,50%)" transform="rotate(${Math.floor(rng() * 90) - 45} ${x} ${y})"/>`,
    );
  }
  const bits = Array.from({ length: 14 }, (_, b) => `<rect x="${4 + b * 7}" y="4" width="6" height="6" fill="${(i >> b) & 1 ? '#fff' : '#000'}"/>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
    <defs><linearGradient id="g" x1="0" y1="0" x2="${rng().toFixed(2)}" y2="1"><stop offset="0" stop-color="hsl(${hue},65%,55%)"/><stop offset="1" stop-color="hsl(${(hue + 40) % 360},50%,20%)"/></linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>${shapes.join('')}${bits}</svg>`;
  const png = i % 3 === 1;
  const set = i % SETS;
  const rel = join(`set-${set}`, `${prefix}-${String(i).padStart(5, '0')}.${png ? 'png' : 'jpg'}`);
  const img = sharp(Buffer.from(svg));
  if (png) return { rel, bytes: await img.png().toBuffer(), format: 'png', takenAt: null };
  // Whole seconds, a day and a few hours apart per photo: 3,650 days cover 2015–2024.
  const takenAt = FIRST_DAY + ((i * 7919) % 3650) * DAY + (i % 24) * 3_600_000;
  const bytes = await img
    .flatten({ background: '#000' })
    .withExif({ IFD0: { Make: 'LoadCam', Model: `L-${set}` }, IFD2: { DateTimeOriginal: exifDate(takenAt) } })
    .jpeg({ quality: 80 })
    .toBuffer();
  return { rel, bytes, format: 'jpeg', takenAt };
}

/** Made ahead, a few at a time (libvips runs them on its own threads), so the load window spends no CPU on it. */
export async function makePhotos(from: number, count: number, prefix: string): Promise<Photo[]> {
  const out: Photo[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let k = next++; k < count; k = next++) out[k] = await makePhoto(from + k, prefix);
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return out;
}

export async function writePhotos(root: string, photos: readonly Photo[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let k = next++; k < photos.length; k = next++) {
      const p = photos[k]!;
      const file = join(root, p.rel);
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, p.bytes);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

/**
 * A library that is already large when the server starts: `count` photos in `root`/archive, indexed, with
 * their thumbnails. The index keeps a library below 20,000 photos in exact search and builds its HNSW graph
 * (on a worker thread, then swapped in while searches go on) once it crosses that; a library just below the
 * line makes the photos arriving under load trigger that build. Ingesting 20,000 real files would take
 * minutes, so the files are hard links to one JPEG, and their rows (same size and mtime as the file, so the
 * start-up scan leaves them alone) carry distinct made-up content hashes with clustered vectors, the way
 * bench/query.ts makes its library. Each thumbnail is a link to one WebP.
 */
export async function makeArchive(dataDir: string, modelDir: string, root: string, count: number, sample: Photo): Promise<void> {
  const { width = null, height = null } = await sharp(sample.bytes).metadata();
  const thumbnail = join(dirname(root), 'archive-thumb.webp');
  await sharp(sample.bytes).resize(160).webp().toFile(thumbnail);
  const library = await Library.open({ dataDir, model: modelDir });
  try {
    await addSyntheticPhotos(library, {
      root,
      count,
      seed: 5,
      path: (i) => join(root, 'archive', `archive-${String(i).padStart(5, '0')}.jpg`),
      hash: (i) => `a${i.toString(16).padStart(63, '0')}`,
      files: { linked: sample.bytes, sourceDir: dirname(root) },
      width,
      height,
      takenAt: (i) => FIRST_DAY + (i % 3650) * DAY,
      thumbnail,
    });
  } finally {
    await library.close();
  }
}

/** Burst sizes (0.3× to 1.7× the mean, at random) that add up to `total`. */
export function burstPlan(total: number, bursts: number, rng: Rng): number[] {
  const raw = Array.from({ length: bursts }, () => 0.3 + 1.4 * rng());
  const sum = raw.reduce((a, b) => a + b, 0);
  const sizes = raw.map((r) => Math.floor((r / sum) * total));
  let rest = total - sizes.reduce((a, b) => a + b, 0);
  for (let k = 0; rest > 0; k = (k + 1) % bursts, rest--) sizes[k]!++;
  return sizes;
}

// ---- requests ----

export interface RequestSpec {
  kind: string;
  method: 'GET' | 'POST';
  path: string;
  body?: string | FormData;
  json?: boolean;
  /** 'ok': a valid request, any 2xx; a number: an invalid one, which must get exactly that status. */
  expect: 'ok' | number;
  /** For a 2xx answer: what is wrong with it, or null. */
  check?: (body: unknown, res: Response, bytes: Buffer) => string | null;
}

const WORDS = ['dog', 'cat', 'beach', 'sunset', 'mountain', 'snow', 'kids', 'birthday', 'cake', 'garden', 'kayak', 'lake', 'city', 'night', 'forest', 'car', 'bike', 'grandma', 'wedding', 'concert', 'red', 'blue', 'circle', 'stripes'];
/** Phrases asked again and again: these hit the server's text cache, the rest are new and run the text encoder. */
const COMMON = ['a dog on the beach', 'sunset over the lake', 'red circle', 'blue stripes', 'kids at a birthday party', 'snow in the mountains', 'city at night', 'green forest'];

export interface Context {
  root: string;
  rng: Rng;
  /** Ids seen in results: photos that are indexed (nothing is ever deleted here). */
  ids: number[];
  counter: { phrase: number };
  uploadPng: Buffer;
  /** Every /api/status answer, for the ingest and index timeline. */
  onStatus?: (body: { indexed: number; index: { engine: string; building: boolean } | null }) => void;
}

function phrase(ctx: Context): string {
  if (ctx.rng() < 0.3) return COMMON[Math.floor(ctx.rng() * COMMON.length)]!;
  const i = ctx.counter.phrase++;
  const w = (k: number) => WORDS[(i * k + Math.floor(ctx.rng() * WORDS.length)) % WORDS.length];
  return `${w(1)} ${w(7)} near the ${w(13)} ${i}`;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)]!;
}

const YEAR = (y: number) => `${y}-01-01`;

interface Result {
  id: number;
  path: string;
  score: number;
  format: string | null;
  takenAt: number | null;
}

function resultsOf(body: unknown): Result[] | string {
  const results = (body as { results?: unknown })?.results;
  if (!Array.isArray(results)) return 'no results array';
  for (const r of results as Result[]) if (typeof r.id !== 'number' || typeof r.score !== 'number' || typeof r.path !== 'string') return `malformed result ${JSON.stringify(r)}`;
  return results as Result[];
}

/** Checks a search answer against its filters; remembers the ids it returns for the similar/thumbnail requests. */
function searchCheck(ctx: Context, f: { folder?: string; formats?: string[]; after?: number; before?: number; exclude?: number[]; sort?: 'date-desc' | 'date-asc' }) {
  return (body: unknown): string | null => {
    const results = resultsOf(body);
    if (typeof results === 'string') return results;
    for (const r of results) {
      if (f.folder && !r.path.startsWith(f.folder + sep)) return `result ${r.id} (${r.path}) is outside the folder ${f.folder}`;
      if (f.formats && !f.formats.includes(r.format ?? '')) return `result ${r.id} has format ${r.format}, asked for ${f.formats.join(',')}`;
      if (f.after !== undefined && (r.takenAt === null || r.takenAt < f.after)) return `result ${r.id} taken ${r.takenAt}, asked after ${f.after}`;
      if (f.before !== undefined && (r.takenAt === null || r.takenAt >= f.before)) return `result ${r.id} taken ${r.takenAt}, asked before ${f.before}`;
      // A stored photo used as a positive term is left out of its own results (excludeQueryImages).
      if (f.exclude?.includes(r.id)) return `a query by photo ${r.id} returned the photo itself`;
    }
    if (f.sort) {
      // Dated photos in date order, undated ones after them.
      const dir = f.sort === 'date-desc' ? -1 : 1;
      for (let k = 1; k < results.length; k++) {
        const a = results[k - 1]!.takenAt;
        const b = results[k]!.takenAt;
        if ((a === null && b !== null) || (a !== null && b !== null && dir * (b - a) < 0)) return `${f.sort}: ${a} before ${b}`;
      }
    }
    for (const r of results.slice(0, 5)) remember(ctx, r.id);
    return null;
  };
}

function remember(ctx: Context, id: number): void {
  if (ctx.ids.length < 4000) ctx.ids.push(id);
  else ctx.ids[Math.floor(ctx.rng() * ctx.ids.length)] = id;
}

const errorBody = (body: unknown) => (typeof (body as { error?: { code?: unknown } })?.error?.code === 'string' ? null : 'no error code in the body');

/** The invalid requests: each must be refused with exactly this status, never answered 5xx. */
/** Requests the API must refuse with a clear 4xx, one picked at random each time. */
const INVALID_REQUESTS: readonly Omit<RequestSpec, 'kind' | 'check'>[] = [
  { method: 'GET', path: '/api/search', expect: 400 },
  { method: 'GET', path: '/api/search?q=dog&limit=0', expect: 400 },
  { method: 'GET', path: '/api/search?q=dog&after=not-a-date', expect: 400 },
  { method: 'GET', path: '/api/images/0/similar', expect: 400 },
  { method: 'GET', path: '/api/images/987654321/similar', expect: 404 },
  { method: 'GET', path: '/api/images/987654321/thumbnail', expect: 404 },
  { method: 'POST', path: '/api/search', body: JSON.stringify({ terms: [] }), json: true, expect: 400 },
  { method: 'POST', path: '/api/search', body: '{"terms": [{"text": "dog"', json: true, expect: 400 },
];

function invalidRequest(ctx: Context): RequestSpec {
  const spec = INVALID_REQUESTS[Math.floor(ctx.rng() * INVALID_REQUESTS.length)]!;
  return { ...spec, kind: 'invalid', check: errorBody };
}

/** One request of the mix (weights in percent). */
export function nextRequest(ctx: Context): RequestSpec {
  const { rng } = ctx;
  const r = rng() * 100;
  const id = ctx.ids.length ? pick(rng, ctx.ids) : null;
  if (r < 25 || id === null) {
    const limit = pick(rng, [10, 20, 50, 100]);
    return { kind: 'search', method: 'GET', path: `/api/search?q=${encodeURIComponent(phrase(ctx))}&limit=${limit}`, expect: 'ok', check: searchCheck(ctx, {}) };
  }
  if (r < 40) {
    const params = new URLSearchParams({ q: phrase(ctx), limit: String(pick(rng, [20, 50])) });
    const f: Parameters<typeof searchCheck>[1] = {};
    if (rng() < 0.5) {
      // The archive folder is a 20,000-photo subset: past the exact-subset size, so a filtered graph search.
      f.folder = join(ctx.root, rng() < 0.2 ? 'archive' : `set-${Math.floor(rng() * SETS)}`);
      params.set('folder', f.folder);
    }
    if (rng() < 0.4) {
      f.formats = [pick(rng, ['jpeg', 'png'])];
      params.set('format', f.formats[0]!);
    }
    if (rng() < 0.4) {
      const y = 2015 + Math.floor(rng() * 8);
      f.after = Date.parse(YEAR(y));
      f.before = Date.parse(YEAR(y + 1 + Math.floor(rng() * 3)));
      params.set('after', YEAR(y));
      params.set('before', new Date(f.before).toISOString().slice(0, 10));
    }
    if (rng() < 0.3) {
      f.sort = pick(rng, ['date-desc', 'date-asc'] as const);
      params.set('sort', f.sort);
    }
    if (rng() < 0.2) params.set('offset', String(Math.floor(rng() * 60)));
    return { kind: 'search-filtered', method: 'GET', path: `/api/search?${params}`, expect: 'ok', check: searchCheck(ctx, f) };
  }
  if (r < 58) {
    const formats = rng() < 0.25 ? [pick(rng, ['jpeg', 'png'])] : undefined;
    const q = `limit=${pick(rng, [12, 24, 50])}${formats ? `&format=${formats[0]}` : ''}`;
    return { kind: 'similar', method: 'GET', path: `/api/images/${id}/similar?${q}`, expect: 'ok', check: searchCheck(ctx, { exclude: [id], ...(formats ? { formats } : {}) }) };
  }
  if (r < 73) {
    return {
      kind: 'thumbnail',
      method: 'GET',
      path: `/api/images/${id}/thumbnail`,
      expect: 'ok',
      check: (_b, res, bytes) => (res.headers.get('content-type')?.startsWith('image/webp') && bytes.length > 0 ? null : `thumbnail ${id}: ${res.headers.get('content-type')}, ${bytes.length} bytes`),
    };
  }
  if (r < 77) {
    return { kind: 'image', method: 'GET', path: `/api/images/${id}`, expect: 'ok', check: (b) => ((b as { status?: string }).status === 'indexed' ? null : `photo ${id} is ${(b as { status?: string }).status}`) };
  }
  if (r < 87) {
    return {
      kind: 'status',
      method: 'GET',
      path: '/api/status',
      expect: 'ok',
      check: (b) => {
        const body = b as { indexed?: unknown; index?: { engine: string; building: boolean } | null };
        if (typeof body.indexed !== 'number') return 'no indexed count';
        ctx.onStatus?.({ indexed: body.indexed, index: body.index ?? null });
        return null;
      },
    };
  }
  if (r < 94) {
    // Phrases and stored photos mixed with weights, one negative: the combined-query path.
    const other = pick(rng, ctx.ids);
    const formats = rng() < 0.3 ? ['png'] : undefined;
    const body = {
      terms: [{ text: phrase(ctx) }, { imageId: id, weight: 0.5 + rng() }, ...(rng() < 0.5 ? [{ text: pick(rng, COMMON), weight: -0.3 }] : []), ...(other !== id ? [{ imageId: other, weight: 0.4 }] : [])],
      limit: pick(rng, [10, 30]),
      ...(formats ? { format: formats } : {}),
    };
    return { kind: 'post-search', method: 'POST', path: '/api/search', body: JSON.stringify(body), json: true, expect: 'ok', check: searchCheck(ctx, { exclude: [id, other], ...(formats ? { formats } : {}) }) };
  }
  if (r < 96) {
    // An uploaded photo: the image tower of the server's own model runs beside the ingest encoder thread.
    const form = new FormData();
    form.append('query', JSON.stringify({ terms: [{ text: phrase(ctx), weight: 0.5 }], limit: 20 }));
    form.append('image', new Blob([new Uint8Array(ctx.uploadPng)], { type: 'image/png' }), 'query.png');
    return { kind: 'post-upload', method: 'POST', path: '/api/search', body: form, expect: 'ok', check: searchCheck(ctx, {}) };
  }
  return invalidRequest(ctx);
}

// ---- the tally ----

export interface KindTally {
  sent: number;
  ok: number;
  /** Invalid requests refused with the status they had to get. */
  expected4xx: number;
  /** A valid request refused, or an invalid one answered otherwise (5xx counted apart). */
  unexpected: number;
  serverErrors: number;
  networkErrors: number;
  /** 2xx whose body broke its request's promise (a filter not honoured, a malformed result). */
  wrongAnswers: number;
  ms: number[];
}

export class Tally {
  readonly kinds = new Map<string, KindTally>();
  readonly problems: string[] = [];

  of(kind: string): KindTally {
    let t = this.kinds.get(kind);
    if (!t) this.kinds.set(kind, (t = { sent: 0, ok: 0, expected4xx: 0, unexpected: 0, serverErrors: 0, networkErrors: 0, wrongAnswers: 0, ms: [] }));
    return t;
  }

  note(problem: string): void {
    if (this.problems.length < 30) this.problems.push(problem);
  }

  total(field: Exclude<keyof KindTally, 'ms'>): number {
    let n = 0;
    for (const t of this.kinds.values()) n += t[field];
    return n;
  }

  allMs(): number[] {
    return [...this.kinds.values()].flatMap((t) => t.ms);
  }
}

/** Sends one request and files its outcome; never throws. */
export async function send(url: string, spec: RequestSpec, tally: Tally, timeoutMs: number): Promise<void> {
  const t = tally.of(spec.kind);
  t.sent++;
  const started = performance.now();
  let res: Response;
  let bytes: Buffer;
  try {
    res = await fetch(url + spec.path, {
      method: spec.method,
      ...(spec.body !== undefined ? { body: spec.body } : {}),
      ...(spec.json ? { headers: { 'content-type': 'application/json' } } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    bytes = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    t.networkErrors++;
    const e = err as Error & { cause?: { code?: string; message?: string } };
    tally.note(`${spec.method} ${spec.path}: ${e.name}: ${e.message}${e.cause ? ` (${e.cause.code ?? ''} ${e.cause.message ?? ''})` : ''}`);
    return;
  }
  t.ms.push(performance.now() - started);
  const status = res.status;
  if (status >= 500) {
    t.serverErrors++;
    tally.note(`${spec.method} ${spec.path}: ${status} ${bytes.toString('utf8', 0, 300)}`);
    return;
  }
  const good = spec.expect === 'ok' ? status >= 200 && status < 300 : status === spec.expect;
  if (!good) {
    t.unexpected++;
    tally.note(`${spec.method} ${spec.path}: ${status}, expected ${spec.expect}: ${bytes.toString('utf8', 0, 300)}`);
    return;
  }
  if (spec.expect === 'ok') t.ok++;
  else t.expected4xx++;
  if (!spec.check) return;
  let body: unknown = null;
  if (res.headers.get('content-type')?.includes('json')) {
    try {
      body = JSON.parse(bytes.toString('utf8'));
    } catch {
      t.wrongAnswers++;
      tally.note(`${spec.method} ${spec.path}: a JSON body that does not parse`);
      return;
    }
  }
  let problem: string | null;
  try {
    problem = spec.check(body, res, bytes);
  } catch (err) {
    problem = `an answer its check could not read: ${(err as Error).message}`;
  }
  if (problem) {
    t.wrongAnswers++;
    tally.note(`${spec.method} ${spec.path}: ${problem}`);
  }
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const round1 = (x: number) => Math.round(x * 10) / 10;

// ---- the server process ----

/**
 * The pid of the `clipdex serve` this process started, found by its command line (which holds the test's
 * own temporary folder): the shared startServe helper does not hand out its child.
 */
export function findServePid(marker: string): number {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('serve') && cmd.some((a) => a.includes(marker))) return Number(name);
    } catch {
      // a process that ended while being read
    }
  }
  throw new Error(`no clipdex serve child of ${process.pid} with ${marker} on its command line`);
}

/** Resident memory of a process in MB, from /proc/<pid>/status (VmRSS is in kB). */
export function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Math.round(Number(m[1]) / 1024);
}

/** CPU time a process has used so far, in seconds (utime + stime of /proc/<pid>/stat, in clock ticks of 1/100 s on Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5), counted from the state field (3) here.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

// ---- the server log ----

/**
 * `clipdex serve` writes its log to stderr, every line of its own prefixed `clipdex: ` (listening, shutting
 * down, and the ingest engine's notices and failures: serve.ts). Anything else is an error by construction:
 * `internal error: …` with its stack (a 500, http-errors.ts), `… failed: …` (training-jobs.ts), stack frames,
 * Node's own `(node:pid) …Warning`, an uncaught exception. Of the prefixed lines, "indexing could not start"
 * is an error; a failure of the engine prints like a notice, so it is caught by the engine's lastFailure in
 * /api/status (never cleared once set) and its message is matched here when there is one.
 */
export function classifyLog(log: string, lastFailureMessage: string | null): { errors: string[]; notices: string[] } {
  const errors: string[] = [];
  const notices: string[] = [];
  for (const line of log.split('\n')) {
    if (line.trim() === '') continue;
    if (!line.startsWith('clipdex: ')) errors.push(line);
    else if (line.startsWith('clipdex: listening on ') || line === 'clipdex: shutting down') continue;
    else if (line.startsWith('clipdex: indexing could not start') || (lastFailureMessage !== null && line === `clipdex: ${lastFailureMessage}`)) errors.push(line);
    else notices.push(line);
  }
  return { errors, notices };
}
