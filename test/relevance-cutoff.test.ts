/**
 * The relevance cut-off: the rule on constructed score lists (a random-weight model's scores mean nothing,
 * so the rule is proven on lists whose answer is known), then its wiring end to end on a real library, the
 * REST API and the built CLI: every result marked strong or weaker, strong first, the count over every
 * candidate and not one page, explicit minScoreRatio still dropping what is under it, and a model that says
 * its score is a calibrated probability getting the absolute rule.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import { Library } from '../src/library/library.js';
import { calibratedProbability } from '../src/model/manifest.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { QueryEngine, type SearchResponse } from '../src/search/query-engine.js';
import { calibrationOf, DEFAULT_STRONG_PROBABILITY, DEFAULT_STRONG_RATIO, isStrong, relevanceCutoff } from '../src/search/relevance-cutoff.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { runCli } from './helpers/cli.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

describe('the rule, on constructed score lists', () => {
  it('relative: strong from 0.9 of the best score by default, whatever the order of the list', () => {
    const scores = [0.32, 0.31, 0.3, 0.289, 0.287, 0.2, 0.1];
    const cut = relevanceCutoff({ scores });
    expect(cut).toEqual({ rule: 'relative', value: DEFAULT_STRONG_RATIO, minScore: expect.closeTo(0.288, 9), strongCount: 4 });
    expect(relevanceCutoff({ scores: [...scores].reverse() }).strongCount).toBe(4);
    expect(scores.map((s) => isStrong(s, cut))).toEqual([true, true, true, true, false, false, false]);
    // The scale does not matter: a photo query scoring near 1 splits the same way.
    expect(relevanceCutoff({ scores: scores.map((s) => s * 3) }).strongCount).toBe(4);
  });

  it('relative: a ratio of its own moves the cut; 0 keeps every score, 1 only the best (ties included)', () => {
    const scores = [0.9, 0.9, 0.8, 0.5, 0.44];
    expect(relevanceCutoff({ scores, ratio: 0.5 }).strongCount).toBe(4);
    expect(relevanceCutoff({ scores, ratio: 0 }).strongCount).toBe(5);
    expect(relevanceCutoff({ scores, ratio: 1 }).strongCount).toBe(2);
  });

  it('relative: nothing is strong when even the best score is ≤ 0, or there are no scores; a NaN never is', () => {
    expect(relevanceCutoff({ scores: [-0.01, -0.2] })).toEqual({ rule: 'relative', value: 0.9, minScore: null, strongCount: 0 });
    expect(relevanceCutoff({ scores: [0, 0] }).strongCount).toBe(0);
    expect(relevanceCutoff({ scores: [] })).toMatchObject({ minScore: null, strongCount: 0 });
    expect(relevanceCutoff({ scores: [0.5, Number.NaN, 0.49] }).strongCount).toBe(2);
    expect(isStrong(0.3, { minScore: null })).toBe(false);
  });

  it('absolute (calibrated probabilities): p ≥ 0.5 by default, however the best compares', () => {
    const probabilities = [0.97, 0.81, 0.52, 0.5, 0.49, 0.02];
    expect(relevanceCutoff({ calibrated: true, probabilities })).toEqual({ rule: 'absolute', value: DEFAULT_STRONG_PROBABILITY, minScore: 0.5, strongCount: 4 });
    expect(relevanceCutoff({ calibrated: true, probabilities, threshold: 0.8 }).strongCount).toBe(2);
    // No match in the library: the relative rule would still call the best ones strong, the absolute rule does not.
    const noMatch = [0.3, 0.29, 0.28, 0.05];
    expect(relevanceCutoff({ calibrated: true, probabilities: noMatch }).strongCount).toBe(0);
    expect(relevanceCutoff({ scores: noMatch }).strongCount).toBe(3);
  });

  it('refuses a ratio or threshold outside 0–1 with a clear error', () => {
    expect(() => relevanceCutoff({ scores: [0.3], ratio: 1.5 })).toThrow(ClipdexError);
    expect(() => relevanceCutoff({ scores: [0.3], ratio: -0.1 })).toThrow(/ratio must be a number from 0 to 1/);
    expect(() => relevanceCutoff({ calibrated: true, probabilities: [0.3], threshold: Number.NaN })).toThrow(/threshold must be a number from 0 to 1/);
  });

  it('reads a calibrated score only from a model that carries a logit scale and bias', () => {
    expect(calibrationOf({ scoreCalibration: null })).toBeNull();
    const p = calibrationOf({ scoreCalibration: { logitScale: 10, logitBias: -3 } })!;
    expect(p(0.3)).toBeCloseTo(0.5, 9);
    expect(p(0.5)).toBeCloseTo(1 / (1 + Math.exp(-2)), 12);
  });
});

describe('end to end: engine, API and CLI', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'clipdex-cutoff-'));
  const photos = join(tmp, 'photos');
  let model: string;
  let library: Library;
  let engine: QueryEngine;
  let server: RunningServer;
  let ids: number[];

  /** Three near-copies of one picture (a), and pictures unlike it: a photo query with a known split. */
  async function picture(file: string, hue: number, shift = 0): Promise<void> {
    const bg = { r: (hue * 97) % 256, g: (hue * 57 + 80) % 256, b: (hue * 151 + 30) % 256 };
    await sharp({ create: { width: 160, height: 120, channels: 3, background: bg } })
      .composite([{ input: { create: { width: 40 + hue * 7, height: 50, channels: 3, background: { r: 255 - bg.r, g: 255 - bg.g, b: 255 - bg.b } } }, left: 10 + hue * 9 + shift, top: 20 + ((hue * 13) % 50) }])
      .jpeg({ quality: 90 })
      .toFile(file);
  }

  const files: string[] = [];

  beforeAll(async () => {
    mkdirSync(photos, { recursive: true });
    for (let i = 0; i < 3; i++) files.push(join(photos, `a-${i}.jpg`));
    for (let i = 0; i < 3; i++) await picture(files[i]!, 1, i * 2);
    for (let h = 2; h < 12; h++) {
      const f = join(photos, `other-${h}.jpg`);
      await picture(f, h);
      files.push(f);
    }
    model = await tinyModel(tmp, 7);
    library = await Library.open({ dataDir: join(tmp, 'data'), model, cacheDir: join(tmp, 'cache') });
    ids = await indexFiles(library, photos, files, (_f, i) => Date.UTC(2024, 0, 1 + i));
    engine = new QueryEngine(library);
    server = await startServer({ library, port: 0 });
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await library?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const get = async (path: string) => {
    const res = await fetch(`${server.url}${path}`);
    return { status: res.status, body: (await res.json()) as SearchResponse & { error?: { code: string; message: string } } };
  };

  /** The response's own promises: strong first, each mark matching the cut, and the count matching the marks. */
  function expectConsistentSplit(r: SearchResponse): number {
    const marks = r.results.map((x) => x.strong);
    const strong = marks.filter(Boolean).length;
    expect(marks).toEqual(marks.map((_, i) => i < strong));
    for (const x of r.results) expect(x.strong).toBe(r.cutoff.minScore !== null && x.score >= r.cutoff.minScore);
    return strong;
  }

  it('marks each result of a photo query strong or weaker, strong first, relative to 0.9 of the best', async () => {
    const { status, body } = await get(`/api/images/${ids[0]}/similar?limit=50`);
    expect(status).toBe(200);
    expect(body.results).toHaveLength(ids.length - 1);
    expect(body.cutoff).toMatchObject({ rule: 'relative', value: 0.9 });
    expect(body.cutoff.minScore).toBeCloseTo(body.bestScore! * 0.9, 9);
    const strong = expectConsistentSplit(body);
    // The near-copies are strong; the fixture is made so some photos are not.
    expect(strong).toBe(body.cutoff.strongCount);
    expect(strong).toBeGreaterThanOrEqual(2);
    expect(strong).toBeLessThan(body.results.length);
    const copies = new Set(ids.slice(1, 3));
    expect(body.results.filter((x) => copies.has(x.id)).every((x) => x.strong)).toBe(true);
  });

  it('counts the strong matches over every candidate, not the page: a page of one says the same count', async () => {
    const whole = (await get(`/api/images/${ids[0]}/similar?limit=50`)).body;
    for (const limit of [1, 2]) {
      const page = (await get(`/api/images/${ids[0]}/similar?limit=${limit}`)).body;
      expect(page.results).toHaveLength(limit);
      expect(page.cutoff.strongCount).toBe(whole.cutoff.strongCount);
      expect(page.hasMore).toBe(true);
    }
    // Past the strong ones, a page holds weaker ones only, with the same count.
    const past = (await get(`/api/images/${ids[0]}/similar?limit=3&offset=${whole.cutoff.strongCount}`)).body;
    expect(past.results.every((x) => !x.strong)).toBe(true);
    expect(past.cutoff.strongCount).toBe(whole.cutoff.strongCount);
  });

  it('keeps explicit minScoreRatio as documented: what is under it is dropped, the rest is strong', async () => {
    const { body } = await get(`/api/images/${ids[0]}/similar?limit=50&minScoreRatio=0.95`);
    expect(body.cutoff).toMatchObject({ rule: 'relative', value: 0.95 });
    expect(body.results.length).toBeGreaterThan(0);
    expect(body.results.every((x) => x.strong && x.score >= body.bestScore! * 0.95)).toBe(true);
    expect(body.cutoff.strongCount).toBe(body.results.length);
    const all = (await get(`/api/images/${ids[0]}/similar?limit=50&minScoreRatio=0`)).body;
    expect(all.results).toHaveLength(ids.length - 1);
    expect(all.results.every((x) => x.strong)).toBe(true);
    const bad = await get(`/api/images/${ids[0]}/similar?minScoreRatio=2`);
    expect(bad.status).toBe(400);
    expect(bad.body.error?.message).toMatch(/minScoreRatio.*0 to 1/);
  });

  it('date order keeps the strong matches only (the boundary a date-sorted list needs)', async () => {
    const whole = (await get(`/api/images/${ids[0]}/similar?limit=50`)).body;
    const byDate = (await get(`/api/images/${ids[0]}/similar?limit=50&sort=date-desc`)).body;
    expect(byDate.results.map((x) => x.id).sort()).toEqual(whole.results.filter((x) => x.strong).map((x) => x.id).sort());
    expect(byDate.results.every((x) => x.strong)).toBe(true);
    const taken = byDate.results.map((x) => x.takenAt!);
    expect(taken).toEqual([...taken].sort((a, b) => b - a));
  });

  it('a text query carries the split too (GET and POST alike)', async () => {
    const { body } = await get('/api/search?q=a%20photo&limit=50');
    expect(body.cutoff.rule).toBe('relative');
    expect(expectConsistentSplit(body)).toBe(Math.min(body.cutoff.strongCount, body.results.length));
    const post = await fetch(`${server.url}/api/search`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ terms: [{ imageId: ids[0] }], limit: 50 }) });
    const posted = (await post.json()) as SearchResponse;
    expect(posted.cutoff.strongCount).toBe((await get(`/api/images/${ids[0]}/similar?limit=50`)).body.cutoff.strongCount);
  });

  it('documents the split and its default in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${server.url}/api/openapi.json`)).json()) as { components: { schemas: Record<string, { properties: Record<string, unknown> }> }; paths: Record<string, any> };
    expect(Object.keys(doc.components.schemas.SearchResponse!.properties)).toContain('cutoff');
    expect(Object.keys(doc.components.schemas.SearchResult!.properties)).toContain('strong');
    expect(JSON.stringify(doc.components.schemas.SearchCutoff)).toMatch(/default 0\.9/);
    const param = (doc.paths['/api/search'].get.parameters as { name: string; description?: string; schema?: { description?: string } }[]).find((p) => p.name === 'minScoreRatio')!;
    expect(param.description ?? param.schema?.description).toMatch(/strong from 0\.9 of the best score/);
  });

  it('takes the absolute rule for a model whose score is a calibrated probability (a SigLIP folder), and gives each result its probability', async () => {
    // A real sigmoid-loss model folder: its config carries the logit scale and bias the engine must use.
    const dir = (await buildTinyModel({ out: join(tmp, 'siglip'), preset: 'siglip-tiny', layout: 'hf', seed: 7 })).dir;
    const open = () => Library.open({ dataDir: join(tmp, 'siglip-data'), model: dir, cacheDir: join(tmp, 'cache') });
    let siglip = await open();
    let first: SearchResponse;
    let sigIds: number[];
    try {
      sigIds = await indexFiles(siglip, photos, files, (_f, i) => Date.UTC(2024, 0, 1 + i));
      first = await new QueryEngine(siglip).search({ terms: [{ imageId: sigIds[0]! }], limit: 50 });
      const calibration = siglip.requireModel().model.scoreCalibration!;
      expect(calibration).not.toBeNull();
      expect(first.cutoff).toMatchObject({ rule: 'absolute', value: DEFAULT_STRONG_PROBABILITY });
      for (const r of first.results) {
        expect(r.probability).toBeCloseTo(calibratedProbability(r.score, calibration), 12);
        expect(r.strong).toBe(r.probability! >= DEFAULT_STRONG_PROBABILITY);
      }
    } finally {
      await siglip.close();
    }
    // The folder's calibration moved so that p = 0.5 falls between the 5th and 6th scores: exactly those
    // above it are strong (the vectors are reused: the key follows the ONNX files, not config.json).
    const scores = first.results.map((r) => r.score);
    expect(scores[4]).toBeGreaterThan(scores[5]!);
    const mid = (scores[4]! + scores[5]!) / 2;
    const configPath = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(configPath, JSON.stringify({ ...config, logit_scale: 200, logit_bias: -200 * mid }));
    siglip = await open();
    try {
      const engine2 = new QueryEngine(siglip);
      const calibrated = await engine2.search({ terms: [{ imageId: sigIds[0]! }], limit: 50 });
      expect(calibrated.results.map((r) => r.score)).toEqual(scores);
      expect(calibrated.cutoff).toEqual({ rule: 'absolute', value: 0.5, minScore: 0.5, strongCount: 5 });
      expect(calibrated.results.map((r) => r.strong)).toEqual(scores.map((_, i) => i < 5));
      // An explicit ratio is the user's relative rule still; the probability stays on each result.
      const relative = await engine2.search({ terms: [{ imageId: sigIds[0]! }], minScoreRatio: 0.5 });
      expect(relative.cutoff.rule).toBe('relative');
      expect(relative.results.every((r) => typeof r.probability === 'number')).toBe(true);
    } finally {
      await siglip.close();
    }
  });

  it('gives no probability for a CLIP model, whose cosine is not calibrated', async () => {
    const { body } = await get('/api/search?q=a%20photo&limit=5');
    expect(body.results.length).toBeGreaterThan(0);
    for (const r of body.results) expect(r).not.toHaveProperty('probability');
  });

  describe('the CLI', () => {
    const cli = (...args: string[]) => runCli(['--data-dir', join(tmp, 'data'), '--model', model, '--cache-dir', join(tmp, 'cache'), ...args]);

    it('prints the strong matches and says how many weaker ones it left out; --all prints them after a note', async () => {
      const whole = await engine.search({ terms: [{ imageId: ids[0]! }], limit: 20 });
      const strong = whole.results.filter((r) => r.strong);
      const weaker = whole.results.length - strong.length;
      const r = await cli('similar', String(ids[0]));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toEqual(strong.map((x) => `${x.score.toFixed(4)}  ${x.path}`));
      expect(r.stderr).toContain(`${weaker} weaker matches not shown (--all to show them)`);

      const all = await cli('similar', String(ids[0]), '--all');
      expect(all.code, all.stderr).toBe(0);
      expect(all.stdout.trim().split('\n')).toEqual(whole.results.map((x) => `${x.score.toFixed(4)}  ${x.path}`));
      expect(all.stderr).toContain('weaker matches:');
      expect(all.stderr).not.toContain('not shown');
    });

    it('says "N+" when a page of weaker ones continues, and carries the split in --json', async () => {
      const strongCount = (await engine.search({ terms: [{ imageId: ids[0]! }], limit: 50 })).cutoff.strongCount;
      const r = await cli('similar', String(ids[0]), '-k', String(strongCount + 2));
      expect(r.stderr).toContain('2+ weaker matches not shown (--all to show them)');
      const json = JSON.parse((await cli('--json', 'similar', String(ids[0]), '-k', '3')).stdout) as SearchResponse;
      expect(json.cutoff).toMatchObject({ rule: 'relative', value: 0.9, strongCount });
      expect(json.results.map((x) => typeof x.strong)).toEqual(['boolean', 'boolean', 'boolean']);
    });

    it('keeps --min-score-ratio: only what passes it, all strong, nothing left out; a bad one is refused', async () => {
      const r = await cli('similar', String(ids[0]), '--min-score-ratio', '0');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(ids.length - 1);
      expect(r.stderr).not.toContain('weaker');
      const bad = await cli('similar', String(ids[0]), '--min-score-ratio', '1.5');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--min-score-ratio/);
    });

    it('says so when nothing is strong: a phrase minus a photo scores below 0 against photos all like that one', async () => {
      const minus = await engine.search({ terms: [{ text: 'a photo' }, { imageId: ids[0]!, weight: -1 }], excludeQueryImages: false, limit: 20 });
      expect(minus.bestScore!).toBeLessThanOrEqual(0);
      expect(minus.cutoff).toMatchObject({ minScore: null, strongCount: 0 });
      const r = await cli('search', 'a photo', '--plain', '--subtract', String(ids[0]));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('no strong matches');
      expect(r.stderr).toContain(`${minus.results.length} weaker matches not shown (--all to show them)`);
    });
  });
});
