/**
 * Corrupt and hostile image files through the real ingest path: the built `clipdex index` (its own
 * process, so a crash in a decoder shows as a signal or an exit code, not as a lost test worker) over
 * every file of ../shared/photos/edge/ read in place, and over seeded corruptions of real JPEG, PNG,
 * WebP, HEIC, GIF, TIFF and AVIF files: truncated at random offsets, bytes flipped, headers zeroed,
 * huge declared dimensions, bytes spliced in, slices duplicated, runs zeroed, garbage appended.
 *
 * Asserted: the command exits 0 with its JSON summary; every file has exactly one row; a failed file has
 * a known error code and a message naming it; an indexed file has its embedding and thumbnail and decodes
 * here too; the originals are indexed; the corruptions whose outcome is certain (empty, header zeroed,
 * huge dimensions) fail with the right code; the library searches afterwards.
 *
 * CI: 120 corruptions; STRESS=1: 2,000. FUZZ_SEED=<n> replays a set.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../../src/library/library.js';
import { openImage } from '../../src/model/image-decode.js';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { seededRandom } from '../../src/util/seeded-random.js';
import { runCli } from '../helpers/cli.js';
import { noise } from '../helpers/ingest-fixtures.js';
import { NEEDS_SHARED, sharedPath } from '../helpers/shared.js';
import { STRESS } from './hostile-helpers.js';

const CORRUPTIONS = STRESS ? 2_000 : 120;
const SEED = Number(process.env.FUZZ_SEED ?? 1_234_567);
const EDGE = sharedPath('photos', 'edge');
const LABELED = sharedPath('photos', 'labeled');

/** What a failed file may be recorded as; anything else (INTERNAL, INFERENCE_FAILED…) is a bug. */
const FILE_ERRORS = new Set(['EMPTY_FILE', 'NOT_AN_IMAGE', 'UNSUPPORTED_FORMAT', 'DECODE_FAILED', 'IMAGE_TOO_LARGE', 'FILE_UNREADABLE']);

type Kind = 'original' | 'truncate' | 'flip' | 'zero-header' | 'huge-dims' | 'splice' | 'duplicate' | 'zero-run' | 'trailing' | 'empty';
const KINDS: Kind[] = ['truncate', 'flip', 'zero-header', 'huge-dims', 'splice', 'duplicate', 'zero-run', 'trailing'];

interface Base {
  name: string;
  ext: string;
  bytes: Buffer;
}

interface Variant {
  file: string;
  base: string;
  kind: Kind;
  /** The outcome that is certain for this corruption, if any. */
  expect?: { status: 'indexed' } | { status: 'error'; codes: string[] };
}

const u16be = (b: Buffer, at: number, v: number) => b.writeUInt16BE(v & 0xffff, at);

/** Sets the dimensions a header declares, format by format; null when this file's layout is not one we rewrite. */
function hugeDims(ext: string, src: Buffer): Buffer | null {
  const b = Buffer.from(src);
  if (ext === '.jpg') {
    // Walk the segments to the first start-of-frame and declare 65500×65500.
    let at = 2;
    while (at + 9 < b.length && b[at] === 0xff) {
      const marker = b[at + 1]!;
      const len = b.readUInt16BE(at + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        u16be(b, at + 5, 65_500);
        u16be(b, at + 7, 65_500);
        return b;
      }
      at += 2 + len;
    }
    return null;
  }
  if (ext === '.png') {
    b.writeUInt32BE(100_000, 16);
    b.writeUInt32BE(100_000, 20);
    // A valid CRC, so the only thing wrong is the size.
    b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
    return b;
  }
  if (ext === '.webp') {
    // WebP's own maximum, 16383×16383, in the lossy frame header and in the extended canvas (stored minus
    // one) alike: libwebp refuses a canvas that disagrees with its frame as a corrupt header instead.
    let found = false;
    for (let at = 12; at + 8 <= b.length; at += 8 + b.readUInt32LE(at + 4) + (b.readUInt32LE(at + 4) & 1)) {
      const fourcc = b.toString('latin1', at, at + 4);
      if (fourcc === 'VP8X') {
        b.writeUIntLE(16_382, at + 12, 3);
        b.writeUIntLE(16_382, at + 15, 3);
      } else if (fourcc === 'VP8 ' && b[at + 11] === 0x9d && b[at + 12] === 0x01 && b[at + 13] === 0x2a) {
        b.writeUInt16LE(16_383, at + 14);
        b.writeUInt16LE(16_383, at + 16);
        found = true;
      }
    }
    return found ? b : null;
  }
  if (ext === '.gif') {
    // The logical screen, and the first frame's descriptor (decoders size the picture by the frames).
    b.writeUInt16LE(65_535, 6);
    b.writeUInt16LE(65_535, 8);
    let at = 13 + (b[10]! & 0x80 ? 3 * 2 ** ((b[10]! & 7) + 1) : 0);
    while (at < b.length) {
      if (b[at] === 0x2c) {
        b.writeUInt16LE(65_535, at + 5);
        b.writeUInt16LE(65_535, at + 7);
        return b;
      }
      if (b[at] !== 0x21) return null;
      at += 2; // introducer and label, then size-prefixed sub-blocks up to a zero
      while (at < b.length && b[at] !== 0) at += b[at]! + 1;
      at++;
    }
    return null;
  }
  return null;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const x of buf) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One corruption of `base`, decided entirely by `rand`, so a seed always gives the same files. */
function corrupt(base: Base, kind: Kind, rand: () => number): { bytes: Buffer; kind: Kind } {
  const src = base.bytes;
  const n = src.length;
  const at = (max = n) => Math.floor(rand() * max);
  switch (kind) {
    case 'truncate':
      return { bytes: Buffer.from(src.subarray(0, at(n)))!, kind };
    case 'flip': {
      const b = Buffer.from(src);
      const flips = 1 + at(32);
      for (let i = 0; i < flips; i++) {
        const p = at(n);
        b[p] = b[p]! ^ (1 + at(255));
      }
      return { bytes: b, kind };
    }
    case 'zero-header': {
      const b = Buffer.from(src);
      b.fill(0, 0, Math.min(n, 16 + at(48)));
      return { bytes: b, kind };
    }
    case 'huge-dims': {
      const b = hugeDims(base.ext, src);
      return b ? { bytes: b, kind } : corrupt(base, 'flip', rand);
    }
    case 'splice': {
      const p = at(n);
      const junk = Buffer.from(Array.from({ length: 1 + at(512) }, () => at(256)));
      return { bytes: Buffer.concat([src.subarray(0, p), junk, src.subarray(p)]), kind };
    }
    case 'duplicate': {
      const from = at(n);
      const len = 1 + at(Math.min(4096, n - from));
      const to = at(n);
      return { bytes: Buffer.concat([src.subarray(0, to), src.subarray(from, from + len), src.subarray(to)]), kind };
    }
    case 'zero-run': {
      const b = Buffer.from(src);
      const p = 16 + at(Math.max(1, n - 16));
      b.fill(0, p, Math.min(n, p + 64 + at(4096)));
      return { bytes: b, kind };
    }
    case 'trailing':
      return { bytes: Buffer.concat([src, Buffer.from(Array.from({ length: 1 + at(4096) }, () => at(256)))]), kind };
    default:
      return { bytes: Buffer.from(src), kind };
  }
}

/** Real photographs from ../shared when it is there; pictures made here otherwise (HEIC needs a real file). */
async function loadBases(): Promise<Base[]> {
  const bases: Base[] = [];
  if (EDGE) {
    for (const [name, file] of [
      ['jpeg-photo', 'LadyBird.jpg'],
      ['jpeg-exif', 'orientation_6.jpg'],
      ['png-rgba', 'logo.png'],
      ['webp-alpha', 'yellow_rose.lossy-with-alpha.webp'],
      ['heic', 'chelsea.heic'],
      ['gif-animated', 'no_time_for_that_tiny.gif'],
      ['tiff-multipage', 'multipage.tif'],
      ['avif', 'coffee.avif'],
    ] as const) {
      bases.push({ name, ext: extname(file).toLowerCase(), bytes: readFileSync(join(EDGE, file)) });
    }
  }
  if (LABELED) {
    const dir = join(LABELED, 'fishes');
    const webp = readdirSync(dir).filter((f) => f.endsWith('.webp')).sort()[0]!;
    bases.push({ name: 'webp-photo', ext: '.webp', bytes: readFileSync(join(dir, webp)) });
    // A real photo as PNG, so PNG corruptions also hit an image with real content and no alpha.
    bases.push({ name: 'png-photo', ext: '.png', bytes: await sharp(join(dir, webp)).flatten({ background: '#fff' }).png().toBuffer() });
  }
  if (bases.length === 0) {
    const pic = () => sharp(noise(120, 90, 5), { raw: { width: 120, height: 90, channels: 3 } });
    bases.push({ name: 'jpeg', ext: '.jpg', bytes: await pic().jpeg().toBuffer() });
    bases.push({ name: 'png', ext: '.png', bytes: await pic().png().toBuffer() });
    bases.push({ name: 'webp', ext: '.webp', bytes: await pic().webp().toBuffer() });
    bases.push({ name: 'gif', ext: '.gif', bytes: await pic().gif().toBuffer() });
    bases.push({ name: 'tiff', ext: '.tif', bytes: await pic().tiff().toBuffer() });
  }
  return bases;
}

describe(`corrupt files through \`clipdex index\` ${EDGE ? '(../shared edge files and real bases)' : `(generated bases only; edge files skipped ${NEEDS_SHARED})`}`, () => {
  let tmp: string;
  let corpus: string;
  const variants: Variant[] = [];
  let cli: { code: number; stdout: string; stderr: string };
  let library: Library;
  let edgeFiles: string[] = [];
  interface Row {
    id: number;
    path: string;
    status: string;
    code: string | null;
    message: string | null;
    hash: string | null;
  }
  let rows = new Map<string, Row>();

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-corrupt-'));
    corpus = join(tmp, 'corpus');
    const bases = await loadBases();
    const rand = seededRandom(SEED);
    for (const base of bases) {
      await mkdir(join(corpus, base.name), { recursive: true });
      const original = join(corpus, base.name, `original${base.ext}`);
      await writeFile(original, base.bytes);
      variants.push({ file: original, base: base.name, kind: 'original', expect: { status: 'indexed' } });
      const empty = join(corpus, base.name, `empty${base.ext}`);
      await writeFile(empty, Buffer.alloc(0));
      variants.push({ file: empty, base: base.name, kind: 'empty', expect: { status: 'error', codes: ['EMPTY_FILE'] } });
    }
    for (let i = 0; i < CORRUPTIONS; i++) {
      const base = bases[i % bases.length]!;
      const wanted = KINDS[Math.floor(i / bases.length) % KINDS.length]!;
      const { bytes, kind } = corrupt(base, wanted, rand);
      const file = join(corpus, base.name, `${String(i).padStart(4, '0')}-${kind}${base.ext}`);
      await writeFile(file, bytes);
      const expectation: Variant['expect'] =
        kind === 'zero-header'
          ? { status: 'error', codes: ['NOT_AN_IMAGE'] }
          : kind === 'huge-dims'
            ? { status: 'error', codes: ['IMAGE_TOO_LARGE'] }
            : kind === 'truncate' && bytes.length === 0
              ? { status: 'error', codes: ['EMPTY_FILE'] }
              : undefined;
      variants.push({ file, base: base.name, kind, ...(expectation ? { expect: expectation } : {}) });
    }
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 3 });
    const env = { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') };
    const roots = [corpus, ...(EDGE ? [EDGE] : [])];
    edgeFiles = EDGE ? readdirSync(EDGE).map((f) => join(EDGE, f)).sort() : [];
    cli = await runCli(['--model', model.dir, '--json', 'index', '--no-watch', ...roots], env, STRESS ? 1_500_000 : 240_000);
    library = await Library.open({ dataDir: env.CLIPDEX_DATA_DIR, model: model.dir, session: { providers: ['cpu'] } });
    const all = library.store.db
      .prepare('SELECT id, path, status, error_code AS code, error_message AS message, content_hash AS hash FROM images')
      .all() as Row[];
    rows = new Map(all.map((r) => [r.path, r]));
  }, STRESS ? 1_800_000 : 300_000);

  afterAll(async () => {
    await library?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('the indexing process survived every file: exit 0 and its JSON summary', () => {
    // A decoder crash would end the process by a signal (code 1 from runCli, no JSON) or with a stack trace.
    expect(cli.code, cli.stderr.slice(-2000)).toBe(0);
    // Only the JSON on stdout, however loudly a decoder complains (libheif logs to stdout by itself).
    const summary = JSON.parse(cli.stdout) as { indexed: number; failed: number; pending: number; run: { failed: number; encoded: number; reused: number } };
    expect(summary.pending).toBe(0);
    expect(summary.indexed + summary.failed).toBe(variants.length + edgeFiles.length);
    expect(cli.stderr).not.toMatch(/internal error|Segmentation|Aborted|RangeError|TypeError/);
  });

  it('records every file exactly once: indexed with its embedding and thumbnail, or failed with a known code and a message naming it', async () => {
    const files = [...variants.map((v) => v.file), ...edgeFiles];
    expect([...rows.keys()].sort()).toEqual([...files].sort());
    const { key } = library.requireModel();
    for (const file of files) {
      const r = rows.get(file)!;
      if (r.status === 'error') {
        expect(FILE_ERRORS.has(r.code ?? ''), `${file}: ${r.code} ${r.message}`).toBe(true);
        expect(r.message, file).toContain(basename(file));
      } else {
        expect(r.status, file).toBe('indexed');
        expect(library.embeddings.has(r.hash!, key), file).toBe(true);
        expect(await library.thumbnails.has(r.hash!), file).toBe(true);
      }
    }
  }, 120_000);

  it('indexed only what really decodes: every indexed corruption decodes here with the same decoder', async () => {
    let checked = 0;
    for (const v of variants) {
      if (rows.get(v.file)?.status !== 'indexed') continue;
      const image = await openImage(await readFile(v.file), { name: v.file });
      const px = await image.rgb({ resize: { width: 32, height: 32, kernel: 'cubic' } });
      expect(px.data.length, v.file).toBe(32 * 32 * 3);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
  }, 300_000);

  it('gives the certain outcomes: originals indexed, empty files EMPTY_FILE, zeroed headers NOT_AN_IMAGE, huge dimensions IMAGE_TOO_LARGE', () => {
    const wrong: string[] = [];
    for (const v of variants) {
      if (!v.expect) continue;
      const r = rows.get(v.file)!;
      if (r.status !== v.expect.status || (v.expect.status === 'error' && !v.expect.codes.includes(r.code ?? ''))) {
        wrong.push(`${basename(v.base)}/${basename(v.file)}: ${r.status} ${r.code ?? ''} ${r.message ?? ''} (expected ${JSON.stringify(v.expect)})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it.skipIf(!EDGE)(`the edge files: the known bad ones fail with their reason, the others are indexed ${EDGE ? '' : NEEDS_SHARED}`, () => {
    const bad: Record<string, string[]> = { 'truncated.jpg': ['DECODE_FAILED'], 'not-an-image.jpg': ['NOT_AN_IMAGE'], 'empty.png': ['EMPTY_FILE'] };
    for (const file of edgeFiles) {
      const r = rows.get(file)!;
      const codes = bad[basename(file)];
      if (codes) {
        expect(r.status, file).toBe('error');
        expect(codes, `${file}: ${r.code}`).toContain(r.code);
      } else {
        expect(r.status, `${file}: ${r.code} ${r.message}`).toBe('indexed');
      }
    }
  });

  it('searches afterwards: an original finds itself, and the report is printed', async () => {
    const { model, index } = library.requireModel();
    const original = variants.find((v) => v.kind === 'original' && v.base.startsWith('jpeg'))!;
    const [embedded] = await model.embedImages([original.file]);
    if (!embedded?.ok) throw new Error(`cannot embed ${original.file}`);
    index.sync();
    // Corruptions that decode to the same pixels (garbage after the end) are exact duplicates: any of them may rank first.
    const hits = await index.search(embedded.embedding, 20);
    expect(hits.filter((h) => h.score > 0.999).map((h) => h.id)).toContain(rows.get(original.file)!.id);

    const table = new Map<string, Map<string, number>>();
    for (const v of variants) {
      const r = rows.get(v.file)!;
      const outcome = r.status === 'error' ? r.code! : 'indexed';
      const line = table.get(v.kind) ?? new Map<string, number>();
      line.set(outcome, (line.get(outcome) ?? 0) + 1);
      table.set(v.kind, line);
    }
    const errors = [...rows.values()].filter((r) => r.status === 'error').length;
    // Truncations that still decode (a GIF's or TIFF's unused tail, the padding after a JPEG's last scan), named for the report.
    const cutButIndexed = variants.filter((v) => v.kind === 'truncate' && rows.get(v.file)!.status === 'indexed').map((v) => `${v.base}/${basename(v.file)}`);
    console.log(
      `[hostile-corrupt-corpus] seed ${SEED}: ${variants.length} generated files (${CORRUPTIONS} corruptions of ${new Set(variants.map((v) => v.base)).size} real files, plus originals and empties) + ${edgeFiles.length} edge files; ` +
        `${rows.size} rows, ${errors} errors recorded with a reason, ${rows.size - errors} indexed, crashes 0\n` +
        [...table].map(([kind, outcomes]) => `  ${kind}: ${[...outcomes].map(([o, n]) => `${o} ${n}`).join(', ')}`).join('\n') +
        (cutButIndexed.length ? `\n  truncated yet decodable: ${cutButIndexed.join(' ')}` : ''),
    );
  });
});
