/**
 * `clipdex label`, `labels`, `train` and `adapters` as a user runs them: the built bin on a real library
 * (SQLite file, vector index) of the labeled photos in ../shared, encoded with the self-built model.
 * The library is indexed in-process (a copy of test/helpers/labeled-library.ts's); every step after that goes
 * through the CLI, in order, each step building on the one before (labels → training → activation → rollback → export).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { meanRecall, type RetrievalMetrics } from '../src/train/retrieval-metrics.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { labeledLibrary } from './helpers/labeled-library.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const labeled = sharedPath('photos', 'labeled');
const FOLDERS = ['fishes', 'tools', 'renewable', 'others'];

interface Label {
  id: number;
  imageId: number;
  path: string;
  caption: string;
  split: 'train' | 'val';
}
interface LabelList {
  labels: Label[];
  captions: { caption: string; labels: number; train: number; val: number }[];
  total: number;
}
interface AddReport {
  added: number;
  duplicates: number;
  problems: { at: string; photo: string; reason: string }[];
  problemCount: number;
  labels?: Label[];
}
interface TrainJson {
  adapter: { id: number; version: number; active: boolean };
  outcome: {
    before: RetrievalMetrics | null;
    after: RetrievalMetrics | null;
    blend: number;
    improved: boolean;
    verdict: string;
    history: { epoch: number }[];
    retention: { top10Overlap: number; phrases: number } | null;
    valPairs: number;
    testPairs: number;
    testImages: number;
    bestEpoch: number;
    selection: { method: string; folds: number };
    gain: { change: number; low: number; high: number } | null;
  };
  activated: boolean;
}
interface SearchJson {
  results: { id: number; path: string; score: number }[];
  modelKey: string;
}

describe.skipIf(!labeled)(`clipdex label, labels, train and adapters on ../shared/photos/labeled ${labeled ? '' : NEEDS_SHARED}`, () => {
  let tmp: string;
  let model: string;
  let baseKey: string;
  const files = new Map<string, string[]>();
  const ids = new Map<string, number[]>();

  const cli = (...args: string[]): Promise<CliResult> =>
    runCli(['--data-dir', join(tmp, 'data'), '--model', model, '--cache-dir', join(tmp, 'cache'), ...args]);
  /** Runs with --json, expects success, returns the parsed stdout. */
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await cli('--json', ...args);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as T;
  };
  const list = (...args: string[]) => json<LabelList>('labels', 'list', ...args);
  const search = (phrase: string, ...args: string[]) => json<SearchJson>('search', phrase, '-k', '20', ...args);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'clipdex-cli-train-'));
    const indexed = await labeledLibrary(tmp);
    model = indexed.modelDir;
    for (const folder of FOLDERS) {
      files.set(folder, indexed.files.get(folder)!);
      ids.set(folder, indexed.ids.get(folder)!);
    }
    const library = await Library.open({ dataDir: join(tmp, 'data'), model, cacheDir: join(tmp, 'cache') });
    try {
      baseKey = library.requireModel().key;
    } finally {
      await library.close();
    }
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses to train without labels, saying what to do', async () => {
    const r = await cli('train');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/training needs at least 4 labeled photos/);
    expect(r.stderr).toMatch(/clipdex label/);
  });

  it('labels every photo with its folder name (import-folder), once, and lists the counts per caption', async () => {
    const first = await cli('labels', 'import-folder', labeled!);
    expect(first.code, first.stderr).toBe(0);
    const total = [...files.values()].reduce((s, f) => s + f.length, 0);
    expect(first.stdout).toContain(`${total} labels added, 0 already there, 0 problems`);

    const again = await json<AddReport>('labels', 'import-folder', labeled!);
    expect(again).toMatchObject({ added: 0, duplicates: total, problemCount: 0 });

    const all = await list();
    expect(all.total).toBe(total);
    expect(Object.fromEntries(all.captions.map((c) => [c.caption, c.labels]))).toEqual(Object.fromEntries(FOLDERS.map((f) => [`a photo of ${f}`, files.get(f)!.length])));
    const tools = all.labels.filter((l) => l.caption === 'a photo of tools');
    expect(tools.map((l) => l.imageId).sort((a, b) => a - b)).toEqual([...ids.get('tools')!].sort((a, b) => a - b));

    const text = await cli('labels', 'list', '--caption', 'a photo of fishes');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/id\s+split\s+caption\s+photo/);
    expect(text.stdout).toContain(files.get('fishes')![0]!);
    expect(text.stdout).not.toContain(files.get('tools')![0]!);
    expect(text.stdout).toMatch(new RegExp(`^\\s+${files.get('fishes')!.length}\\s+${files.get('fishes')!.length}\\s+0\\s+a photo of fishes$`, 'm'));
  });

  it('imports a CSV: a bad row is reported by line, the rest are added', async () => {
    const t = files.get('tools')!;
    const csv = join(tmp, 'labels.csv');
    const rel = (p: string) => p.slice(labeled!.length + 1);
    writeFileSync(
      csv,
      ['photo,caption', `${rel(t[0]!)},a hand tool`, `${rel(t[1]!)},"a hand tool, steel"`, 'tools/no-such-photo.webp,a hand tool', `${ids.get('tools')![2]},a hand tool`, `${rel(t[3]!)},a hand tool,extra`].join('\n'),
    );
    const r = await cli('--json', 'labels', 'import', csv, '--base-dir', labeled!);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as AddReport;
    expect(report).toMatchObject({ added: 3, duplicates: 0, problemCount: 2 });
    expect(report.problems.map((p) => p.at)).toEqual(['line 4', 'line 6']);
    expect(report.problems[0]!.reason).toMatch(/no-such-photo\.webp is not a photo in this library/);
    expect(r.stderr).toMatch(/line 4: .*no-such-photo\.webp/);
    expect(r.stderr).toMatch(/line 6 .*3 fields where the header has 2/);

    const added = (await list()).labels;
    expect(added.filter((l) => l.caption === 'a hand tool').map((l) => l.path).sort()).toEqual([t[0]!, t[2]!].sort());
    expect(added.filter((l) => l.caption === 'a hand tool, steel').map((l) => l.path)).toEqual([t[1]!]);

    // Relative paths start at the file's folder unless --base-dir says otherwise: only the id row resolves.
    const fromFileDir = await json<AddReport>('labels', 'import', csv);
    expect(fromFileDir).toMatchObject({ added: 0, duplicates: 1, problemCount: 4 });
    expect(fromFileDir.problems[0]!.reason).toContain(`${join(tmp, rel(t[0]!))} is not a photo in this library`);
    const noHeader = join(tmp, 'no-header.csv');
    writeFileSync(noHeader, `${t[0]},a hand tool\n`);
    const bad = await cli('labels', 'import', noHeader);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/needs a header row with a photo column/);
  });

  it('imports a JSON array of {photo | path | id, caption}', async () => {
    const f = files.get('fishes')!;
    const file = join(tmp, 'labels.json');
    writeFileSync(
      file,
      JSON.stringify([{ photo: f[0], caption: 'a fish in water' }, { id: ids.get('fishes')![1], caption: 'a fish in water' }, { path: f[2], caption: 'a fish in water' }, 42, { photo: f[3], caption: '' }]),
    );
    const report = await json<AddReport>('labels', 'import', file);
    expect(report).toMatchObject({ added: 3, duplicates: 0, problemCount: 2 });
    expect(report.problems.map((p) => p.at)).toEqual(['entry 4', 'entry 5']);
    expect(report.problems[1]!.reason).toMatch(/caption must be a non-empty string/);
    expect((await list('--caption', 'a fish in water')).labels.map((l) => l.imageId).sort((a, b) => a - b)).toEqual(ids.get('fishes')!.slice(0, 3).sort((a, b) => a - b));
  });

  it('labels by path and by id, edits a caption, removes labels', async () => {
    const [path] = files.get('renewable')!;
    const byPath = await cli('label', path!, 'a wind turbine');
    expect(byPath.code, byPath.stderr).toBe(0);
    expect(byPath.stdout).toContain('1 label added');
    const [idA, idB] = ids.get('renewable')!.slice(1, 3);
    const byId = await json<AddReport>('label', String(idA), String(idB), '--caption', 'a solar panel');
    expect(byId).toMatchObject({ added: 2, duplicates: 0, problemCount: 0 });
    expect(byId.labels!.map((l) => l.imageId)).toEqual([idA, idB]);

    const turbine = (await list('--caption', 'a wind turbine')).labels;
    expect(turbine.map((l) => l.path)).toEqual([path]);
    const edit = await cli('labels', 'edit', String(turbine[0]!.id), 'a wind farm');
    expect(edit.code, edit.stderr).toBe(0);
    expect(edit.stdout).toContain('"a wind turbine" → "a wind farm"');
    // The photo already has its folder label: a second equal label would count it twice in training.
    const clash = await cli('labels', 'edit', String(turbine[0]!.id), 'a photo of renewable');
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(/already has the caption "a photo of renewable"/);

    const all = (await list()).labels;
    expect(all.filter((l) => l.caption === 'a wind farm').map((l) => l.id)).toEqual([turbine[0]!.id]);
    expect(all.filter((l) => l.caption === 'a wind turbine')).toEqual([]);
    // Back to the folder labels alone, so training below learns the four folders (it reports 4 captions).
    const extra = all.filter((l) => !l.caption.startsWith('a photo of ')).map((l) => String(l.id));
    expect(extra.length).toBe(3 + 3 + 1 + 2);
    const rm = await cli('labels', 'rm', ...extra);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`${extra.length} labels removed`);
    const again = await cli('labels', 'rm', extra[0]!);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain(`no label with id ${extra[0]}`);
  });

  it('rejects an empty caption, an unknown photo and an unknown label with a clear message', async () => {
    const photo = files.get('tools')![0]!;
    const empty = await cli('label', photo, '  ');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/caption must be a non-empty string/);
    const noCaption = await cli('label', photo);
    expect(noCaption.code).toBe(2);
    expect(noCaption.stderr).toMatch(/give a caption/);
    const unknownPath = await cli('label', join(tmp, 'nowhere.webp'), 'a dog');
    expect(unknownPath.code).toBe(1);
    expect(unknownPath.stderr).toMatch(/nowhere\.webp is not a photo in this library/);
    // Several photos: a report of each problem, and a failure only because none could be labeled.
    const unknownIds = await cli('label', '999999', '999998', '-c', 'a dog');
    expect(unknownIds.code).toBe(1);
    expect(unknownIds.stdout).toContain('0 labels added, 0 already there, 2 problems');
    expect(unknownIds.stderr).toMatch(/argument 1: no photo with id 999999/);
    expect(unknownIds.stderr).toMatch(/argument 2: no photo with id 999998/);
    const unknownLabel = await cli('labels', 'edit', '999999', 'a dog');
    expect(unknownLabel.code).not.toBe(0);
    expect(unknownLabel.stderr).toMatch(/no label with id 999999/);
  });

  let trained: TrainJson;
  let baseResults: SearchJson;

  it('trains (--seed 3 --json): a new version whose test recall beats the base model, interval above 0', async () => {
    trained = await json<TrainJson>('train', '--seed', '3');
    const { before, after, improved, testPairs, gain, selection } = trained.outcome;
    expect(trained.adapter).toMatchObject({ version: 1, active: false });
    expect(trained.activated).toBe(false);
    expect(testPairs).toBeGreaterThan(0);
    expect(selection).toMatchObject({ method: 'cross-validation', folds: 5 });
    expect(improved).toBe(true);
    expect(gain!.low).toBeGreaterThan(0);
    expect(meanRecall(after!)).toBeGreaterThan(meanRecall(before!));
    expect(after!.textToImage.p5).toBeGreaterThan(before!.textToImage.p5);
    expect(trained.outcome.verdict).toMatch(/^improves: \+[\d.]+ points mean recall@1\/5\/10 on \d+ test photos .*90% interval \+/);
    // Training records with the labels which photos the version did not learn from: the test photos.
    expect((await list()).captions.reduce((s, c) => s + c.val, 0)).toBe(testPairs);
  });

  it('shows each epoch while training, then the before/after table, blend, retention, verdict and version', async () => {
    const r = await cli('train', '--seed', '3');
    expect(r.code, r.stderr).toBe(0);
    // Not a terminal here: one plain line per epoch. Same seed, same labels: the same run as before.
    const epochs = r.stderr.split('\n').filter((l) => /^5 folds +epoch \d+\/100 +train loss [\d.]+ +val loss [\d.]+ +best epoch \d+ +patience \d+\/8 left$/.test(l));
    expect(epochs.length).toBe(trained.outcome.history.length);
    const final = r.stderr.split('\n').filter((l) => /^final fit on every photo but the test ones: epoch \d+\/\d+$/.test(l));
    expect(final.length).toBe(trained.outcome.bestEpoch);
    expect(r.stdout).toMatch(/Epoch and blend chosen by 5-fold cross-validation over the \d+ photos learned from/);
    expect(r.stdout).toContain(`On the ${trained.outcome.testImages} test photos:`);
    expect(r.stdout).toMatch(/text → image, 4 captions/);
    expect(r.stdout).toMatch(/^\s+recall@5\s+[\d.]+%\s+[\d.]+%\s+[+-]?[\d.]+ pt$/m);
    expect(r.stdout).toMatch(/^\s+mean rank\s+[\d.]+\s+[\d.]+/m);
    expect(r.stdout).toContain(`Blend ${trained.outcome.blend} `);
    expect(r.stdout).toContain(`for ${trained.outcome.retention!.phrases} phrases outside your labels`);
    expect(r.stdout).toContain(`Verdict: ${trained.outcome.verdict}.`);
    expect(r.stdout).toContain('Saved as adapter v2.');
    expect(r.stdout).toContain('clipdex adapters activate 2');
  });

  it('lists the versions with the active marker on the base model', async () => {
    const text = await cli('adapters', 'list');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^\*\s+base/m);
    expect(text.stdout).toMatch(/^ \s+v1\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+[\d.]+\s+[\d.]+% → [\d.]+%$/m);
    expect(text.stdout).toContain(trained.outcome.verdict);
  });

  let adapterTools: SearchJson;

  it('activates a version: searches go through the adapter, and rollback restores the base results exactly', async () => {
    baseResults = await search('a photo of tools');
    expect(baseResults.modelKey).toBe(baseKey);

    const activate = await cli('adapters', 'activate', '1');
    expect(activate.code, activate.stderr).toBe(0);
    expect(activate.stdout).toMatch(/Searches use adapter v1 .*113 photos re-projected/);
    const listed = await json<{ versions: { version: number; active: boolean }[]; active: number | null }>('adapters', 'list');
    expect(listed.versions.map((v) => [v.version, v.active])).toEqual([
      [1, true],
      [2, false],
    ]);
    expect(listed.active).toBe(1);

    const tuned = await search('a photo of tools');
    expect(tuned.modelKey).toBe(`${baseKey}@adapter-${trained.adapter.id}`);
    expect(tuned.results.map((r) => [r.id, r.score])).not.toEqual(baseResults.results.map((r) => [r.id, r.score]));
    // The adapter learned the folders: more of the top 20 for "a photo of tools" are tools.
    const tools = new Set(ids.get('tools'));
    const hits = (s: SearchJson) => s.results.filter((r) => tools.has(r.id)).length;
    expect(hits(tuned)).toBeGreaterThan(hits(baseResults));
    adapterTools = await search('a photo of tools', '--folder', join(labeled!, 'tools'));

    const rollback = await cli('adapters', 'rollback');
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.stdout).toContain(`Searches use the base model (${baseKey})`);
    const back = await search('a photo of tools');
    expect(back.modelKey).toBe(baseKey);
    expect(back.results.map((r) => [r.id, r.score])).toEqual(baseResults.results.map((r) => [r.id, r.score]));
  });

  it('train --activate activates a version that beats the base model; rollback to a version activates that one', async () => {
    const r = await json<TrainJson>('train', '--seed', '3', '--activate');
    expect(r.activated).toBe(true);
    expect(r.adapter).toMatchObject({ version: 3, active: true });
    expect((await search('a photo of tools')).modelKey).toBe(`${baseKey}@adapter-${r.adapter.id}`);
    const back = await json<{ adapter: { version: number; active: boolean }; modelKey: string }>('adapters', 'rollback', '1');
    expect(back).toMatchObject({ adapter: { version: 1, active: true }, modelKey: `${baseKey}@adapter-${trained.adapter.id}` });
  });

  it('exports a version as a model directory that clipdex loads and that ranks like the activated adapter', async () => {
    const out = join(tmp, 'exported');
    const r = await cli('adapters', 'export', '1', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    const info = JSON.parse(readFileSync(join(out, 'clipdex-adapter.json'), 'utf8')) as { adapterVersion: number; baseKey: string };
    expect(info).toMatchObject({ adapterVersion: 1, baseKey });
    const again = await cli('adapters', 'export', '1', '--out', out);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/exists and is not empty/);

    // A separate library under the exported model: its own embeddings of the tools folder, searched the
    // same way, rank and score like the adapter did inside the first library.
    const exported = (...args: string[]) => runCli(['--model', out, '--data-dir', join(tmp, 'exported-data'), '--cache-dir', join(tmp, 'cache'), ...args]);
    const index = await exported('index', '--no-watch', join(labeled!, 'tools'));
    expect(index.code, index.stderr).toBe(0);
    const found = await exported('--json', 'search', 'a photo of tools', '-k', '20');
    expect(found.code, found.stderr).toBe(0);
    const results = (JSON.parse(found.stdout) as SearchJson).results;
    expect(results.map((x) => x.path)).toEqual(adapterTools.results.map((x) => x.path));
    results.forEach((x, i) => expect(x.score).toBeCloseTo(adapterTools.results[i]!.score, 4));
  });

  it('rejects an unknown or malformed version with a clear message', async () => {
    for (const args of [
      ['adapters', 'activate', '99'],
      ['adapters', 'rollback', '99'],
    ]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/no adapter version 99 for model/);
    }
    const malformed = await cli('adapters', 'activate', 'latest');
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/a version must be a positive integer/);
    const badOption = await cli('train', '--epochs', '2.5');
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(/epochs must be an integer/);
  });
});
