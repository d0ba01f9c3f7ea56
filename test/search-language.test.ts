/**
 * The phrase's language reaches an NLLB-CLIP text tower from the API (`lang`) and the CLI (`--lang`): the
 * code given changes the embedding (the language token comes first), a tag maps to its code, a malformed
 * value is refused by form before anything runs and an unknown code by the model with the codes near it;
 * a CLIP model takes the option and ignores it. A real library with self-built models, a real server and
 * the built CLI.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import type { SearchResponse } from '../src/search/query-engine.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { serveLibrary } from './helpers/served-library.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-lang-'));
const photos = join(tmp, 'photos');
const files = Array.from({ length: 6 }, (_, i) => join(photos, `p${i}.jpg`));
let nllb: string;
let clip: string;

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  for (const [i, f] of files.entries()) await writeJpeg(f, 40 + i, 96, 72);
  nllb = (await buildTinyModel({ out: join(tmp, 'nllb'), preset: 'nllb-siglip-tiny', seed: 5 })).dir;
  clip = await tinyModel(tmp, 5);
  for (const [model, data] of [
    [nllb, 'data-nllb'],
    [clip, 'data-clip'],
  ] as const) {
    const library = await Library.open({ dataDir: join(tmp, data), model });
    try {
      await indexFiles(library, photos, files);
    } finally {
      await library.close();
    }
  }
}, 180_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const scores = (r: SearchResponse) => r.results.map((x) => [x.id, x.score]);
const PHRASE = encodeURIComponent('ein Hund spielt am Strand');

describe('an NLLB-CLIP library', () => {
  const served = serveLibrary(() => ({ dataDir: join(tmp, 'data-nllb'), model: nllb }));

  it('searches with the language given: another code gives other scores, a tag the same as its code', async () => {
    const german = await served.api(`/api/search?q=${PHRASE}&lang=deu_Latn`);
    const english = await served.api(`/api/search?q=${PHRASE}&lang=eng_Latn`);
    const tag = await served.api(`/api/search?q=${PHRASE}&lang=de-DE`);
    const detected = await served.api(`/api/search?q=${PHRASE}`);
    for (const r of [german, english, tag, detected]) expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(scores(english.body)).not.toEqual(scores(german.body));
    expect(scores(tag.body)).toEqual(scores(german.body));
    // The detector reads this phrase as German.
    expect(scores(detected.body)).toEqual(scores(german.body));
    const posted = await served.postJson('/api/search', { q: 'ein Hund spielt am Strand', lang: 'eng_Latn' });
    expect(scores(posted.body)).toEqual(scores(english.body));
  });

  it('refuses a malformed value by its form and an unknown code with the codes near it, as 400s', async () => {
    const malformed = await served.api(`/api/search?q=dog&lang=${encodeURIComponent('<script>')}`);
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toMatch(/lang.*must be a language tag \(de, pt-BR\) or a FLORES-200 code \(deu_Latn\)/);
    const unknown = await served.api('/api/search?q=dog&lang=deu_Latm');
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toMatch(/deu_Latn/);
  });

  it('takes --lang in the CLI, with the API’s answer', async () => {
    const cli = (...args: string[]) => runCli(['--data-dir', join(tmp, 'data-nllb'), '--model', nllb, '--json', 'search', ...args]);
    const r = await cli('ein Hund spielt am Strand', '--lang', 'eng_Latn', '-k', '50');
    expect(r.code, r.stderr).toBe(0);
    const api = await served.api(`/api/search?q=${PHRASE}&lang=eng_Latn`);
    expect(scores(JSON.parse(r.stdout) as SearchResponse)).toEqual(scores(api.body));
    const bad = await cli('dog', '--lang', '12');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--lang must be a language tag/);
  });
});

describe('a CLIP library', () => {
  const served = serveLibrary(() => ({ dataDir: join(tmp, 'data-clip'), model: clip }));

  it('takes a language and ignores it: its text tower has none', async () => {
    const plain = await served.api(`/api/search?q=${PHRASE}`);
    const german = await served.api(`/api/search?q=${PHRASE}&lang=deu_Latn`);
    expect(plain.status).toBe(200);
    expect(scores(german.body)).toEqual(scores(plain.body));
  });
});
