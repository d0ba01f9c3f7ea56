/**
 * Migration 007 and OcrRepo on a real SQLite file: readings per content (done with lines, failed with a
 * reason), counts and the pending list the background pass works from, full-text search (phrases, pieces too
 * short for the trigram index, accents, hidden photos), garbage collection with the content — and the
 * measurement behind the tokenizer choice (trigram against unicode61 on the test words).
 */
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DuplicatesRepo } from '../src/store/duplicates-repo.js';
import { OrphansRepo } from '../src/store/orphans-repo.js';
import { OcrRepo, type StoredLine } from '../src/store/ocr-repo.js';
import { fold, WORDS } from './helpers/ocr-photos.js';
import { openTestLibrary, tempLibraryDir, type TestLibrary } from './helpers/store-fixtures.js';

const box = (x: number, y: number): StoredLine['box'] => [[x, y], [x + 0.2, y], [x + 0.2, y + 0.05], [x, y + 0.05]];
const line = (text: string, y = 0.1): StoredLine => ({ text, confidence: 0.95, box: box(0.1, y) });

describe('OcrRepo on migration 007', () => {
  let tmp: ReturnType<typeof tempLibraryDir>;
  let lib: TestLibrary;
  let ocr: OcrRepo;
  let rootId: number;
  const photo = (name: string, hash: string) =>
    lib.images.upsert({ rootId, path: `/p/${name}`, size: 1, mtimeMs: 1, contentHash: hash, status: 'indexed' });

  beforeEach(() => {
    tmp = tempLibraryDir('clipdex-ocr-store-');
    lib = openTestLibrary(tmp.dir);
    ocr = new OcrRepo(lib.store.db);
    rootId = lib.roots.add('/p').id;
  });
  afterEach(() => {
    lib.close();
    tmp.cleanup();
  });

  it('a reading round-trips with its lines in order, and a new reading replaces it', () => {
    photo('a.jpg', 'h1');
    ocr.saveDone('h1', { engine: 'ppocr-v4', lines: [line('Q3 roadmap'), line('draft', 0.3)], stopped: null, readMs: 120 });
    expect(ocr.reading('h1')).toMatchObject({ status: 'done', engine: 'ppocr-v4', stopped: null, errorCode: null, readMs: 120 });
    expect(ocr.reading('h1')!.lines).toEqual([line('Q3 roadmap'), line('draft', 0.3)]);
    expect(ocr.search(['roadmap'], 10).map((h) => h.imageId)).toHaveLength(1);
    ocr.saveDone('h1', { engine: 'ppocr-v4', lines: [line('final')], stopped: 'boxes', readMs: 90 });
    expect(ocr.reading('h1')!.lines.map((l) => l.text)).toEqual(['final']);
    expect(ocr.reading('h1')!.stopped).toBe('boxes');
    // The replaced text is gone from the index too.
    expect(ocr.search(['roadmap'], 10)).toEqual([]);
    expect(ocr.reading('nope')).toBeUndefined();
  });

  it('a failure is recorded with its reason; counts and pending follow indexed contents, copies once', () => {
    photo('a.jpg', 'h1');
    photo('copy-of-a.jpg', 'h1');
    photo('b.jpg', 'h2');
    photo('c.jpg', 'h3');
    lib.images.upsert({ rootId, path: '/p/broken.jpg', size: 1, mtimeMs: 1, status: 'error', errorCode: 'DECODE_FAILED', errorMessage: 'x' });
    expect(ocr.counts()).toEqual({ done: 0, failed: 0, pending: 3 });
    expect(ocr.pending(10).map((p) => p.hash)).toEqual(['h1', 'h2', 'h3']);
    expect(ocr.pending(10)[0]!.path).toBe('/p/a.jpg');
    ocr.saveDone('h1', { engine: 'e', lines: [], stopped: null, readMs: 1 });
    ocr.saveFailed('h2', 'e', 'INFERENCE_FAILED', 'text recognition: out of memory');
    expect(ocr.reading('h2')).toMatchObject({ status: 'failed', errorCode: 'INFERENCE_FAILED', errorMessage: 'text recognition: out of memory', lines: [] });
    expect(ocr.counts()).toEqual({ done: 1, failed: 1, pending: 1 });
    expect(ocr.pending(10).map((p) => p.hash)).toEqual(['h3']);
  });

  it('search: every piece must be in the text; short pieces by scan; accents and case folded; hidden photos left out', () => {
    const a = photo('a.jpg', 'h1');
    const b = photo('b.jpg', 'h2');
    const c = photo('c.jpg', 'h3');
    ocr.saveDone('h1', { engine: 'e', lines: [line('Q3 roadmap'), line('Café Müller', 0.3)], stopped: null, readMs: 1 });
    ocr.saveDone('h2', { engine: 'e', lines: [line('Q4 roadmap')], stopped: null, readMs: 1 });
    ocr.saveDone('h3', { engine: 'e', lines: [line('東京タワー 営業中')], stopped: null, readMs: 1 });
    const ids = (pieces: string[]) => ocr.search(pieces, 10).map((h) => h.imageId).sort();
    expect(ids(['roadmap'])).toEqual([a.id, b.id].sort());
    expect(ids(['Q3 roadmap'])).toEqual([a.id]);
    // Lines are joined by a space: a phrase over two boxes of one row is found.
    expect(ids(['roadmap Café'])).toEqual([a.id]);
    expect(ids(['q3', 'roadmap'])).toEqual([a.id]);
    expect(ids(['Q3'])).toEqual([a.id]);
    expect(ids(['cafe muller'])).toEqual([a.id]);
    expect(ids(['ROAD'])).toEqual([a.id, b.id].sort());
    expect(ids(['タワー'])).toEqual([c.id]);
    expect(ids(['"; DROP TABLE ocr_state; --'])).toEqual([]);
    expect(ids(['  '])).toEqual([]);
    new DuplicatesRepo(lib.store.db).hide(b.id);
    expect(ids(['roadmap'])).toEqual([a.id]);
  });

  it('garbage collection drops the text with its content, and keeps it while a photo has that content', () => {
    const a = photo('a.jpg', 'h1');
    photo('b.jpg', 'h2');
    ocr.saveDone('h1', { engine: 'e', lines: [line('receipt')], stopped: null, readMs: 1 });
    ocr.saveDone('h2', { engine: 'e', lines: [line('invoice')], stopped: null, readMs: 1 });
    lib.images.remove(a.id);
    new OrphansRepo(lib.store.db).collectGarbage(0);
    expect(ocr.reading('h1')).toBeUndefined();
    expect(ocr.search(['receipt'], 10)).toEqual([]);
    expect(ocr.reading('h2')!.lines[0]!.text).toBe('invoice');
  });
});

describe('tokenizer: trigram against unicode61 on the test words', () => {
  it('measured: both find whole words with accents folded; only trigram finds parts of words, run-together words and CJK', () => {
    const db = new Database(':memory:');
    db.exec(`CREATE VIRTUAL TABLE tri USING fts5 (text, tokenize = 'trigram remove_diacritics 1');
             CREATE VIRTUAL TABLE uni USING fts5 (text, tokenize = 'unicode61 remove_diacritics 2');`);
    // What the recogniser gives for the words (measured: it drops accents it has no letter for, and spaces).
    const stored = [...WORDS.map((w) => w.replace('ü', 'u').replace('ñ', 'n').replace('ç', 'c')), 'Region-basedsegmentation', '東京タワー'];
    for (const t of stored) for (const table of ['tri', 'uni']) db.prepare(`INSERT INTO ${table} (text) VALUES (?)`).run(t);
    const queries = {
      // The word as a person types it: lower case, no accents.
      whole: WORDS.map((w) => fold(w)),
      // Its first 4 characters (a word half typed), or the word when shorter.
      prefix: WORDS.map((w) => fold(w).slice(0, 4)),
      // A piece from inside the word.
      infix: WORDS.filter((w) => w.length >= 6).map((w) => fold(w).slice(2, 6)),
      runTogether: ['segmentation'],
      cjk: ['タワー'],
    };
    const rate = (table: string, qs: string[]) => {
      let hit = 0;
      for (const q of qs) {
        const phrase = `"${q.replace(/"/g, '""')}"`;
        if ((db.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${table} MATCH ?`).get(phrase) as { n: number }).n > 0) hit++;
      }
      return hit / qs.length;
    };
    const table = Object.fromEntries(Object.entries(queries).map(([k, qs]) => [k, { trigram: +rate('tri', qs).toFixed(3), unicode61: +rate('uni', qs).toFixed(3) }]));
    console.log(JSON.stringify(table));
    // Measured: whole 1 / 1, prefix 1 / 0.25, infix 1 / 0.056, run-together 1 / 0, CJK 1 / 0. A piece of 1–2
    // characters ('Q3' typed alone) is where trigram finds nothing: OcrRepo.search scans for those instead.
    expect(table.whole).toEqual({ trigram: 1, unicode61: 1 });
    expect(table.prefix!.trigram).toBe(1);
    expect(table.prefix!.unicode61).toBeLessThan(0.5);
    expect(table.infix!.trigram).toBe(1);
    expect(table.infix!.unicode61).toBeLessThan(0.1);
    expect(table.runTogether).toEqual({ trigram: 1, unicode61: 0 });
    expect(table.cjk).toEqual({ trigram: 1, unicode61: 0 });
    db.close();
  });
});
