/**
 * Groups of duplicate photos: exact copies (same content hash, from the store) and near-duplicates (cosine
 * distance under a threshold, from the vector index: each photo's k nearest, asked in batches, pairs under
 * the threshold merged into groups with union-find). Optionally rotation-invariant: pairs that are close but
 * not close enough are compared again with the first photo's 90°, 180° and 270° rotations encoded.
 *
 * Distances are those of the base model's image embeddings (an activated adapter is trained on the user's
 * words, not on what makes two files the same picture).
 */
import sharp from 'sharp';
import { ClipdexError, errorMessage } from '../errors.js';
import { normalized, type SearchHit } from '../index/vector-index.js';
import type { LibraryIndex } from '../index/library-index.js';
import type { Library } from '../library/library.js';
import type { ImageEmbeddingResult } from '../model/clip-model.js';

import { DuplicatesRepo } from '../store/duplicates-repo.js';
import type { ImageRecord, ImagesRepo } from '../store/images-repo.js';
import type { ThumbnailStore } from '../store/thumbnail-store.js';
import {
  DEFAULT_DUPLICATE_THRESHOLD,
  DEFAULT_NEIGHBOURS,
  duplicateThresholdParam,
  MAX_DUPLICATE_THRESHOLD,
  neighboursParam,
  rotationsParam,
} from '../validation/duplicates-params.js';
import { parseParam } from '../validation/param-rules.js';
import { photoFromRecord, type PhotoSummary } from './query-engine.js';
import type { SqlHandle } from '../store/sql-handle.js';

export interface FindDuplicatesOptions {
  /** Cosine distance under which two photos are duplicates; default 0.01 (0.001–0.1). */
  threshold?: number;
  /** Also pair photos that match once one of them is turned by 90°, 180° or 270°. Default false. */
  rotations?: boolean;
  /** Neighbours asked per photo (1–100). Default 10. */
  neighbours?: number;
  /**
   * Rotations: pairs closer than this are candidates whose rotations are encoded. 0.35 keeps the pairs a
   * real CLIP model puts a rotated copy in (cosine similarity 0.65–0.9) and leaves most unrelated photos out.
   */
  rotationRadius?: number;
  /** Rotations: at most this many photos get their rotations encoded (3 encodes each). Default 2000. */
  rotationBudget?: number;
  /** Queries per index batch. Default 512. */
  batchSize?: number;
  /**
   * HNSW candidate list per photo. Default 32: a near-duplicate is far closer than any neighbour a general
   * query looks for, and the index's tuned ef (for recall@10 of any query) costs 3× more per photo
   * (bench:duplicates measures both). Exact mode ignores it.
   */
  ef?: number;
  onProgress?: (p: DuplicateProgress) => void;
}

export interface DuplicateProgress {
  phase: 'neighbours' | 'rotations';
  done: number;
  total: number;
}

export type FormatRank = 0 | 1 | 2 | 3;

/** A photo of a group: what every list of photos carries, and where it stands in its group. */
export interface DuplicatePhoto extends PhotoSummary {
  keeper: boolean;
  /** Cosine distance to the group's keeper (through the pairs found: 0 for an exact copy), rounded. */
  distance: number;
  /** True when the photo has the keeper's very bytes. */
  exactCopy: boolean;
  /** Set when this photo joined its group only once turned: the angle (90, 180, 270) it matched at. */
  rotated?: number;
}

export interface DuplicateGroup {
  /** `g` + the smallest photo id: stable while the group keeps that photo. */
  id: string;
  /** exact: all the same bytes; near: none; mixed: both kinds of pairs. */
  kind: 'exact' | 'near' | 'mixed';
  keeperId: number;
  /** Why the keeper was chosen, in words ("largest: 4032×3024 against 1600×1200"). */
  reason: string;
  /** Largest distance of a pair that holds the group together. */
  maxDistance: number;
  /** The keeper first, then the others by distance to it. */
  photos: DuplicatePhoto[];
}

export interface DuplicatePair {
  a: { id: number; path: string };
  b: { id: number; path: string };
  distance: number;
}

export interface DuplicatesReport {
  threshold: number;
  rotations: boolean;
  neighbours: number;
  groups: DuplicateGroup[];
  /** Photos that would be hidden or trashed if every suggestion were taken. */
  duplicatePhotos: number;
  /** Photos compared (searchable photos of the base model). */
  photosChecked: number;
  /**
   * Pairs of the user's own photos to show what the threshold means: just under it (in a group) and just
   * over it (what a higher threshold would add), closest to the threshold first.
   */
  examples: { under: DuplicatePair[]; over: DuplicatePair[] };
  /** Rotation pass: photos whose rotations were encoded, and pairs left uncompared by the budget. */
  rotationStats: { encodedPhotos: number; candidatePairs: number; skippedPairs: number; failedPhotos: number } | null;
  hiddenCount: number;
  trashCount: number;
  tookMs: number;
  modelKey: string;
}

/** Lossless or camera originals first, then JPEG, then web re-encodes, then GIF's 256 colours. */
const FORMAT_RANK: Record<string, FormatRank> = { tiff: 0, png: 0, bmp: 0, jpeg: 1, heic: 1, avif: 2, webp: 2, gif: 3 };
const FORMAT_WORDS = ['lossless', 'camera JPEG/HEIC', 'web re-encode', '256 colours'];

export function formatRank(format: string | null): FormatRank {
  return FORMAT_RANK[(format ?? '').toLowerCase()] ?? 3;
}

/** Examples are taken from pairs up to this many thresholds away (and never past the slider's maximum). */
const EXAMPLE_SPAN = 4;
const EXAMPLES = 3;

class UnionFind {
  private readonly parent = new Map<number, number>();

  find(x: number): number {
    let root = x;
    while (this.parent.has(root) && this.parent.get(root) !== root) root = this.parent.get(root)!;
    // Path compression: later finds are one step.
    for (let y = x; y !== root; ) {
      const next = this.parent.get(y)!;
      this.parent.set(y, root);
      y = next;
    }
    return root;
  }

  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (!this.parent.has(ra)) this.parent.set(ra, ra);
    if (!this.parent.has(rb)) this.parent.set(rb, rb);
    if (ra !== rb) this.parent.set(Math.max(ra, rb), Math.min(ra, rb));
  }

  members(): Map<number, number[]> {
    const groups = new Map<number, number[]>();
    for (const x of this.parent.keys()) {
      const r = this.find(x);
      const list = groups.get(r);
      if (list) list.push(x);
      else groups.set(r, [x]);
    }
    return groups;
  }
}

type Edge = { a: number; b: number; distance: number; exact: boolean; rotated?: number };

const round = (d: number) => Math.max(0, Math.round(d * 1e5) / 1e5);

/**
 * The keeper among a group's photos and why: most pixels, then the oldest capture date, then the best
 * format (lossless, then camera JPEG/HEIC, then WebP/AVIF, then GIF), then the largest file, then the
 * first added. The reason names the first rule that decided, with the numbers it compared.
 */
export function chooseKeeper(photos: readonly Pick<ImageRecord, 'id' | 'width' | 'height' | 'takenAt' | 'format' | 'size'>[]): { id: number; reason: string } {
  if (photos.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'a group needs at least one photo');
  const pixels = (p: (typeof photos)[number]) => (p.width ?? 0) * (p.height ?? 0);
  // Without a date counts as the newest; two undated photos tie (Infinity − Infinity would be NaN).
  const taken = (p: (typeof photos)[number]) => p.takenAt ?? Number.POSITIVE_INFINITY;
  const order = (x: number, y: number) => (x < y ? -1 : x > y ? 1 : 0);
  const rules: { cmp: (a: (typeof photos)[number], b: (typeof photos)[number]) => number; why: (best: (typeof photos)[number], next: (typeof photos)[number]) => string }[] = [
    { cmp: (a, b) => order(pixels(b), pixels(a)), why: (k, n) => `largest: ${dims(k)} against ${dims(n)}` },
    {
      cmp: (a, b) => order(taken(a), taken(b)),
      why: (k, n) => `same dimensions; taken first: ${day(k.takenAt)} against ${n.takenAt === null ? 'no date' : day(n.takenAt)}`,
    },
    {
      cmp: (a, b) => order(formatRank(a.format), formatRank(b.format)),
      why: (k, n) => `same dimensions and date; best format: ${fmt(k.format)} (${FORMAT_WORDS[formatRank(k.format)]}) against ${fmt(n.format)}`,
    },
    { cmp: (a, b) => order(b.size, a.size), why: (k, n) => `same dimensions, date and format; largest file: ${bytes(k.size)} against ${bytes(n.size)}` },
    { cmp: (a, b) => order(a.id, b.id), why: () => 'alike on every count; the first one added' },
  ];
  const ranked = [...photos].sort((a, b) => {
    for (const r of rules) {
      const c = r.cmp(a, b);
      if (c !== 0) return c;
    }
    return 0;
  });
  const keeper = ranked[0]!;
  if (ranked.length === 1) return { id: keeper.id, reason: 'the only photo' };
  const runnerUp = ranked[1]!;
  const rule = rules.find((r) => r.cmp(keeper, runnerUp) !== 0) ?? rules[rules.length - 1]!;
  return { id: keeper.id, reason: rule.why(keeper, runnerUp) };
}

function dims(p: { width: number | null; height: number | null }): string {
  return p.width && p.height ? `${p.width}×${p.height}` : 'unknown size';
}
function day(ms: number | null): string {
  return ms === null ? 'no date' : new Date(ms).toISOString().slice(0, 10);
}
function fmt(f: string | null): string {
  return (f ?? 'unknown').toUpperCase();
}
function bytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

/**
 * What finding duplicates reads: an opened library gives all of it; a benchmark can bring an index and a
 * database of its own (no encoder: no rotations then).
 */
export interface DuplicateSource {
  index: LibraryIndex;
  modelKey: string;
  db: SqlHandle;
  images: ImagesRepo;
  thumbnails?: ThumbnailStore;
  embedImages?: (inputs: Buffer[]) => Promise<ImageEmbeddingResult[]>;
}

/** The base model's side of a library (see the header for why not an adapter's). */
export function librarySource(library: Library): DuplicateSource {
  const { index, key, model } = library.requireModel();
  return { index, modelKey: key, db: library.store.db, images: library.images, thumbnails: library.thumbnails, embedImages: (inputs) => model.embedImages(inputs) };
}

/** Finds the duplicate groups of a library's searchable photos (hidden ones are not searchable). */
export async function findDuplicates(from: Library | DuplicateSource, options: FindDuplicatesOptions = {}): Promise<DuplicatesReport> {
  const started = performance.now();
  const threshold = parseParam(duplicateThresholdParam, options.threshold ?? DEFAULT_DUPLICATE_THRESHOLD, 'threshold');
  const rotations = parseParam(rotationsParam, options.rotations ?? false, 'rotations');
  const neighbours = parseParam(neighboursParam, options.neighbours ?? DEFAULT_NEIGHBOURS, 'neighbours');
  const library = 'requireModel' in from ? librarySource(from) : from;
  const { index, modelKey: key } = library;
  const repo = new DuplicatesRepo(library.db);
  const rotationRadius = options.rotationRadius ?? 0.35;
  // Pairs up to here are kept: the examples past the threshold, and the rotation candidates.
  const keepBelow = Math.max(Math.min(threshold * EXAMPLE_SPAN, MAX_DUPLICATE_THRESHOLD), rotations ? rotationRadius : 0);
  const batchSize = options.batchSize ?? 512;

  // Everything committed before the call is compared: the index catches up with the change log first.
  index.sync();
  const ids = index.contents().ids;
  const edges: Edge[] = [];
  const near = new Map<number, SearchHit[]>();
  const report = (phase: DuplicateProgress['phase'], done: number, total: number) => options.onProgress?.({ phase, done, total });
  report('neighbours', 0, ids.length);
  for (let start = 0; start < ids.length; start += batchSize) {
    const batchIds: number[] = [];
    const queries: Float32Array[] = [];
    for (const id of ids.slice(start, start + batchSize)) {
      const v = index.vectorOf(id);
      if (v) {
        batchIds.push(id);
        queries.push(v);
      }
    }
    const answers = await index.searchBatch(queries, neighbours + 1, { ef: options.ef ?? 32 });
    answers.forEach((hits, i) => {
      const self = batchIds[i]!;
      const close: SearchHit[] = [];
      for (const h of hits) {
        if (h.id === self) continue;
        const distance = 1 - h.score;
        if (distance >= keepBelow) continue;
        close.push(h);
        // Kept from both ends (HNSW may find a pair from one side only); merged per pair below.
        if (distance < threshold) edges.push({ a: Math.min(self, h.id), b: Math.max(self, h.id), distance, exact: false });
      }
      if (close.length > 0) near.set(self, close);
    });
    report('neighbours', Math.min(ids.length, start + batchSize), ids.length);
    // Let a server answer other requests between batches.
    await new Promise((r) => setImmediate(r));
  }

  for (const group of repo.exactCopyGroups(key)) {
    for (let i = 1; i < group.length; i++) edges.push({ a: Math.min(group[0]!, group[i]!), b: Math.max(group[0]!, group[i]!), distance: 0, exact: true });
  }

  let rotationStats: DuplicatesReport['rotationStats'] = null;
  if (rotations && !library.embedImages) throw new ClipdexError('INVALID_ARGUMENT', 'rotations need the image encoder, which this source has none of');
  if (rotations) {
    const uf = new UnionFind();
    for (const e of edges) uf.union(e.a, e.b);
    rotationStats = await rotationPass(library, near, uf, threshold, options.rotationBudget ?? 2000, edges, (d, t) => report('rotations', d, t));
  }

  // Edges of the same pair (found from both ends, or also as exact copies): the closest, exact first.
  const byPair = new Map<string, Edge>();
  for (const e of edges) {
    const k = `${e.a}:${e.b}`;
    const had = byPair.get(k);
    if (!had || (e.exact && !had.exact) || (e.exact === had.exact && e.distance < had.distance)) byPair.set(k, e);
  }
  const uf = new UnionFind();
  for (const e of byPair.values()) uf.union(e.a, e.b);
  const edgesOf = new Map<number, Edge[]>();
  for (const e of byPair.values()) {
    const root = uf.find(e.a);
    const list = edgesOf.get(root);
    if (list) list.push(e);
    else edgesOf.set(root, [e]);
  }

  const groups: DuplicateGroup[] = [];
  for (const [root, memberIds] of uf.members()) {
    const records = memberIds.flatMap((id) => {
      const r = library.images.get(id);
      return r ? [r] : [];
    });
    if (records.length < 2) continue;
    const { id: keeperId, reason } = chooseKeeper(records);
    const keeper = records.find((r) => r.id === keeperId)!;
    const groupEdges = edgesOf.get(root) ?? [];
    const fromKeeper = distancesFrom(keeperId, groupEdges);
    const kinds = new Set(groupEdges.map((e) => e.exact));
    const photos = records
      .map((r): DuplicatePhoto => {
        const via = fromKeeper.get(r.id);
        const exactCopy = r.id !== keeperId && r.contentHash !== null && r.contentHash === keeper.contentHash;
        return {
          ...photoFromRecord(r),
          keeper: r.id === keeperId,
          distance: exactCopy ? 0 : round(via?.distance ?? 0),
          exactCopy,
          ...(via?.rotated ? { rotated: via.rotated } : {}),
        };
      })
      .sort((a, b) => Number(b.keeper) - Number(a.keeper) || a.distance - b.distance || a.id - b.id);
    groups.push({
      id: `g${Math.min(...records.map((r) => r.id))}`,
      kind: kinds.size === 2 ? 'mixed' : kinds.has(true) ? 'exact' : 'near',
      keeperId,
      reason,
      maxDistance: round(Math.max(...groupEdges.map((e) => e.distance))),
      photos,
    });
  }
  // Biggest clean-up first; then the surest groups.
  groups.sort((a, b) => b.photos.length - a.photos.length || a.maxDistance - b.maxDistance || a.id.localeCompare(b.id));

  return {
    threshold,
    rotations,
    neighbours,
    groups,
    duplicatePhotos: groups.reduce((n, g) => n + g.photos.length - 1, 0),
    photosChecked: ids.length,
    examples: examplePairs(library, near, threshold),
    rotationStats,
    hiddenCount: repo.hiddenCount(),
    trashCount: repo.trashCount(),
    tookMs: Math.round(performance.now() - started),
    modelKey: key,
  };
}

/**
 * Each photo's distance to the keeper along the group's pairs, taking at each step the pair's distance
 * (the largest along the way, as a chain of near-duplicates is only as close as its weakest link).
 */
function distancesFrom(keeperId: number, edges: readonly Edge[]): Map<number, { distance: number; rotated?: number }> {
  const adj = new Map<number, Edge[]>();
  for (const e of edges) {
    for (const end of [e.a, e.b]) {
      const list = adj.get(end);
      if (list) list.push(e);
      else adj.set(end, [e]);
    }
  }
  const best = new Map<number, { distance: number; rotated?: number }>([[keeperId, { distance: 0 }]]);
  const queue = [keeperId];
  // Small groups: a relaxation until nothing improves is enough (minimax path).
  while (queue.length > 0) {
    const at = queue.shift()!;
    const here = best.get(at)!;
    for (const e of adj.get(at) ?? []) {
      const other = e.a === at ? e.b : e.a;
      const d = Math.max(here.distance, e.distance);
      const had = best.get(other);
      if (!had || d < had.distance) {
        best.set(other, { distance: d, ...((e.rotated ?? here.rotated) ? { rotated: e.rotated ?? here.rotated! } : {}) });
        queue.push(other);
      }
    }
  }
  return best;
}

function examplePairs(library: DuplicateSource, near: Map<number, SearchHit[]>, threshold: number): DuplicatesReport['examples'] {
  const seen = new Set<string>();
  const pairs: { a: number; b: number; distance: number }[] = [];
  for (const [self, hits] of near) {
    for (const h of hits) {
      const k = self < h.id ? `${self}:${h.id}` : `${h.id}:${self}`;
      if (seen.has(k)) continue;
      seen.add(k);
      pairs.push({ a: Math.min(self, h.id), b: Math.max(self, h.id), distance: 1 - h.score });
    }
  }
  const describe = (p: { a: number; b: number; distance: number }): DuplicatePair[] => {
    const a = library.images.get(p.a);
    const b = library.images.get(p.b);
    return a && b ? [{ a: { id: a.id, path: a.path }, b: { id: b.id, path: b.path }, distance: round(p.distance) }] : [];
  };
  // Exact copies say nothing about the threshold: only pairs that differ.
  const under = pairs.filter((p) => p.distance < threshold && p.distance > 1e-6).sort((x, y) => y.distance - x.distance);
  const over = pairs.filter((p) => p.distance >= threshold && p.distance < Math.min(threshold * EXAMPLE_SPAN, MAX_DUPLICATE_THRESHOLD)).sort((x, y) => x.distance - y.distance);
  return { under: under.slice(0, EXAMPLES).flatMap(describe), over: over.slice(0, EXAMPLES).flatMap(describe) };
}

/**
 * Rotation-invariant matching, bounded: only pairs already closer than the candidate radius (from the
 * neighbour lists in hand, no extra search) and not yet in one group are compared; each photo's three
 * rotations are encoded at most once, from its stored thumbnail (a few hundred pixels, already decoded
 * once, available even while the original's folder is offline), and at most `budget` photos are encoded.
 */
async function rotationPass(
  library: DuplicateSource,
  near: Map<number, SearchHit[]>,
  uf: UnionFind,
  threshold: number,
  budget: number,
  edges: Edge[],
  progress: (done: number, total: number) => void,
): Promise<NonNullable<DuplicatesReport['rotationStats']>> {
  const { index } = library;
  const candidates: { a: number; b: number }[] = [];
  const seen = new Set<string>();
  for (const [self, hits] of near) {
    for (const h of hits) {
      const a = Math.min(self, h.id);
      const b = Math.max(self, h.id);
      const k = `${a}:${b}`;
      if (seen.has(k) || uf.find(a) === uf.find(b)) continue;
      seen.add(k);
      candidates.push({ a, b });
    }
  }
  const rotated = new Map<number, Float32Array[] | null>();
  let skipped = 0;
  let failed = 0;
  let done = 0;
  progress(0, candidates.length);
  for (const { a, b } of candidates) {
    done++;
    if (!rotated.has(a)) {
      if (rotated.size >= budget) {
        skipped++;
        continue;
      }
      rotated.set(a, await encodeRotations(library, a).catch(() => null));
      if (rotated.get(a) === null) failed++;
      progress(done, candidates.length);
    }
    const turns = rotated.get(a);
    const target = index.vectorOf(b);
    if (!turns || !target) continue;
    let bestAngle = 0;
    let bestDistance = Number.POSITIVE_INFINITY;
    turns.forEach((v, i) => {
      let dot = 0;
      for (let d = 0; d < v.length; d++) dot += v[d]! * target[d]!;
      if (1 - dot < bestDistance) {
        bestDistance = 1 - dot;
        bestAngle = (i + 1) * 90;
      }
    });
    if (bestDistance < threshold) {
      edges.push({ a, b, distance: bestDistance, exact: false, rotated: bestAngle });
      uf.union(a, b);
    }
  }
  progress(candidates.length, candidates.length);
  return { encodedPhotos: [...rotated.values()].filter((v) => v !== null).length, candidatePairs: candidates.length, skippedPairs: skipped, failedPhotos: failed };
}

/** The photo turned by 90°, 180° and 270°, encoded, L2-normalised: from its thumbnail, else its file. */
async function encodeRotations(library: DuplicateSource, id: number): Promise<Float32Array[]> {
  const record = library.images.get(id);
  if (!record) throw new ClipdexError('NOT_FOUND', `no photo with id ${id}`);
  const thumbs = library.thumbnails;
  const source = record.contentHash && thumbs && (await thumbs.has(record.contentHash)) ? thumbs.path(record.contentHash) : record.path;
  let turned: Buffer[];
  try {
    turned = await Promise.all([90, 180, 270].map((angle) => sharp(source).rotate().rotate(angle).png().toBuffer()));
  } catch (err) {
    throw new ClipdexError('DECODE_FAILED', `cannot turn ${record.path}: ${errorMessage(err)}`, { cause: err });
  }
  const results = await library.embedImages!(turned);
  return results.map((r) => {
    if (!r.ok) throw r.error;
    return normalized(r.embedding);
  });
}
