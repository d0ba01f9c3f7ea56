/**
 * The query syntax where users meet it, on a real library of dated photos: the CLI (the built bin) and the
 * REST API (a real server) read the same table of phrases the same way, say what they understood, and the
 * date they read restricts the results; `cat | dog` is the union, each photo at its best score.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { QueryEngine, type SearchResponse } from '../src/search/query-engine.js';
import type { TextSearchResponse, UnderstoodPart } from '../src/search/query-syntax.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { serveLibrary } from './helpers/served-library.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-query-syntax-'));
const photos = join(tmp, 'photos');
const dataDir = join(tmp, 'data');
let model: string;
const names = ['july-10', 'july-25', 'august-2', 'may-2019', 'undated', 'march-2024'];
const files = names.map((n) => join(photos, `${n}.jpg`));
// Noon UTC: capture times are the camera's wall clock stored as if UTC, so a day is a UTC day.
const taken = [Date.UTC(2023, 6, 10, 12), Date.UTC(2023, 6, 25, 12), Date.UTC(2023, 7, 2, 12), Date.UTC(2019, 4, 5, 12), null, Date.UTC(2024, 2, 1, 12)];
const byName = (...n: string[]) => n.map((x) => files[names.indexOf(x)]!).sort();

/** Phrases with fixed dates (not "last winter": the clock of the run decides that one; the unit table covers it). */
const TABLE: { q: string; understood: UnderstoodPart[]; paths: string[] }[] = [
  {
    q: 'photo July 2023',
    understood: [
      { kind: 'phrase', text: 'photo' },
      { kind: 'date', text: 'July 2023', from: '2023-07-01', to: '2023-08-01' },
    ],
    paths: byName('july-10', 'july-25'),
  },
  {
    q: 'birthday 2019',
    understood: [
      { kind: 'phrase', text: 'birthday' },
      { kind: 'date', text: '2019', from: '2019-01-01', to: '2020-01-01' },
    ],
    paths: byName('may-2019'),
  },
  {
    q: 'photos from 2019 to 2023',
    understood: [
      { kind: 'phrase', text: 'photos' },
      { kind: 'date', text: 'from 2019 to 2023', from: '2019-01-01', to: '2024-01-01' },
    ],
    paths: byName('july-10', 'july-25', 'august-2', 'may-2019'),
  },
  { q: 'kids before 2020', understood: [{ kind: 'phrase', text: 'kids' }, { kind: 'date', text: 'before 2020', to: '2020-01-01' }], paths: byName('may-2019') },
  { q: 'the 1975 band', understood: [{ kind: 'phrase', text: 'the 1975 band' }], paths: [...files].sort() },
  { q: 'room 2023', understood: [{ kind: 'phrase', text: 'room 2023' }], paths: [...files].sort() },
  { q: 'a t-shirt at -5 degrees', understood: [{ kind: 'phrase', text: 'a t-shirt at -5 degrees' }], paths: [...files].sort() },
  {
    q: 'dog -cat',
    understood: [
      { kind: 'phrase', text: 'dog' },
      { kind: 'not', text: 'cat' },
    ],
    paths: [...files].sort(),
  },
  { q: 'cat | dog', understood: [{ kind: 'or', phrases: ['cat', 'dog'] }], paths: [...files].sort() },
  {
    q: 'cat | dog "July 2023" -bird',
    understood: [
      { kind: 'or', phrases: ['cat', 'dog July 2023'] },
      { kind: 'not', text: 'bird' },
    ],
    paths: [...files].sort(),
  },
];

const cli = (...args: string[]) => runCli(['--data-dir', dataDir, '--model', model, ...args]);

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  for (let i = 0; i < files.length; i++) await writeJpeg(files[i]!, i + 1);
  model = await tinyModel(tmp);
  const library = await Library.open({ dataDir, model });
  try {
    await indexFiles(library, photos, files, (_f, i) => taken[i]!);
  } finally {
    await library.close();
  }
}, 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the CLI', () => {
  // One CLI start per row, one after another: the bound grows with the table (a start is ~1 s, far more on a
  // machine that is busy).
  it('reads the table of phrases as the API does, and --json says what it understood', { timeout: 30_000 + TABLE.length * 15_000 }, async () => {
    for (const row of TABLE) {
      const r = await cli('--json', 'search', row.q, '-k', '50');
      expect(r.code, `${row.q}: ${r.stderr}`).toBe(0);
      const body = JSON.parse(r.stdout) as TextSearchResponse;
      expect(body.understood, row.q).toEqual(row.understood);
      expect(body.results.map((p) => p.path).sort(), row.q).toEqual(row.paths);
    }
  });

  it('prints a line saying what it understood, takes --plain literally, and keeps --after as well as the date in the phrase', async () => {
    // Quoted as one argument: unquoted, `-dog` would be read as an option. --all: the weaker matches too
    // (a random model's scores decide which are strong), so the lines are every photo the date lets through.
    const r = await cli('search', 'beach July 2023 -dog', '--all');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('understood: "beach" · not "dog" · taken 2023-07-01 to 2023-07-31 ("July 2023")');
    expect(r.stdout.trim().split('\n').map((l) => l.split('  ')[1]).sort()).toEqual(byName('july-10', 'july-25'));

    const plain = JSON.parse((await cli('--json', 'search', '--plain', 'photo July 2023', '-k', '50')).stdout) as TextSearchResponse;
    expect(plain.understood).toEqual([{ kind: 'phrase', text: 'photo July 2023' }]);
    expect(plain.results).toHaveLength(files.length);

    const both = JSON.parse((await cli('--json', 'search', 'photo July 2023', '--after', '2023-07-20')).stdout) as TextSearchResponse;
    expect(both.results.map((p) => p.path)).toEqual(byName('july-25'));
  });
});

describe('the API', () => {
  const served = serveLibrary(() => ({ dataDir, model }));

  const api = served.api;
  const search = (q: string, extra = '', limit = 50) => api(`/api/search?q=${encodeURIComponent(q)}&limit=${limit}${extra}`);
  const post = (body: unknown) => served.postJson('/api/search', body);

  it('reads the table of phrases, answers what it understood, and the date it read restricts the results', async () => {
    for (const row of TABLE) {
      const r = await search(row.q);
      expect(r.status, `${row.q}: ${JSON.stringify(r.body)}`).toBe(200);
      expect(r.body.understood, row.q).toEqual(row.understood);
      expect((r.body as TextSearchResponse).results.map((p) => p.path).sort(), row.q).toEqual(row.paths);
    }
  });

  it('merges `cat | dog` as the union, each photo at its best score of the two, best first, and pages it', async () => {
    const alone = async (q: string) => (await search(q, '&syntax=plain')).body as SearchResponse;
    const [cat, dog] = [await alone('cat'), await alone('dog')];
    const best = new Map<number, number>();
    for (const r of [...cat.results, ...dog.results]) best.set(r.id, Math.max(best.get(r.id) ?? -Infinity, r.score));
    const either = (await search('cat | dog')).body as TextSearchResponse;
    expect(either.results.map((r) => r.id).sort()).toEqual([...best.keys()].sort());
    for (const r of either.results) expect(r.score).toBeCloseTo(best.get(r.id)!, 5);
    const scores = either.results.map((r) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    expect(either.bestScore).toBeCloseTo(Math.max(...best.values()), 5);
    // Pages of two put together are the whole list, and say when more follow.
    const pages: number[] = [];
    for (let offset = 0; offset < files.length; offset += 2) {
      const page = (await search('cat | dog', `&offset=${offset}`, 2)).body as TextSearchResponse;
      pages.push(...page.results.map((r) => r.id));
      expect(page.hasMore, `offset ${offset}`).toBe(offset + 2 < files.length);
    }
    expect(pages).toEqual(either.results.map((r) => r.id));
  });

  it('subtracts `-word` as a negative term, like a weight of -1 in POST', async () => {
    const typed = (await search('dog -cat')).body as TextSearchResponse;
    const weighted = (await post({ terms: [{ text: 'dog' }, { text: 'cat', weight: -1 }], limit: 50 })).body as SearchResponse;
    expect(typed.results.map((r) => [r.id, r.score])).toEqual(weighted.results.map((r) => [r.id, r.score]));
  });

  it('refuses a ninth alternative with one message, typed through the API or given as anyOf to the engine', async () => {
    const typed = await search('a | b | c | d | e | f | g | h | i');
    expect(typed.status).toBe(400);
    expect(typed.body.error.message).toMatch(/at most 8 alternatives \(a \| b\) per search, got 9/);
    const anyOf = Array.from({ length: 9 }, (_, i) => [{ text: `thing ${i}` }]);
    await expect(new QueryEngine(served.library).search({ terms: [], anyOf })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: typed.body.error.message });
  });

  it('keeps an explicit date filter as well as the one in the text, and reads nothing with syntax=plain', async () => {
    const both = (await search('photo July 2023', '&after=2023-07-20')).body as TextSearchResponse;
    expect(both.results.map((r) => r.path)).toEqual(byName('july-25'));
    const disjoint = (await search('photo July 2023', '&before=2023-07-01')).body as TextSearchResponse;
    expect(disjoint.results).toEqual([]);
    const plain = (await search('photo July 2023', '&syntax=plain')).body as TextSearchResponse;
    expect(plain.understood).toEqual([{ kind: 'phrase', text: 'photo July 2023' }]);
    expect(plain.results).toHaveLength(files.length);
    expect((await search('photo', '&syntax=fancy')).status).toBe(400);
  });

  it('POST: `terms` phrases stay literal, `q` is read like GET and searched with the terms', async () => {
    const literal = await post({ terms: [{ text: 'photo July 2023' }], limit: 50 });
    expect(literal.status).toBe(200);
    expect(literal.body.understood).toBeUndefined();
    expect(literal.body.results).toHaveLength(files.length);

    const mayId = (await search('birthday 2019')).body.results[0].id as number;
    const typed = await post({ q: 'photo July 2023', terms: [{ imageId: mayId, weight: 0.5 }], limit: 50 });
    expect(typed.status, JSON.stringify(typed.body)).toBe(200);
    expect(typed.body.understood).toEqual(TABLE[0]!.understood);
    expect((typed.body as TextSearchResponse).results.map((r) => r.path).sort()).toEqual(byName('july-10', 'july-25'));

    const onlyNot = await search('-cat');
    expect(onlyNot.status).toBe(400);
    expect(onlyNot.body.error.message).toMatch(/positive weight/);
  });

  it('describes the syntax and `understood` in /api/openapi.json', async () => {
    const doc = (await api('/api/openapi.json')).body;
    const params = doc.paths['/api/search'].get.parameters.map((p: { name: string }) => p.name);
    expect(params).toContain('syntax');
    expect(doc.components.schemas.SearchResponse.properties.understood).toBeDefined();
    expect(doc.components.schemas.UnderstoodPart).toBeDefined();
  });
});
