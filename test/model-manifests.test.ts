/**
 * The shipped manifests are read and checked at start-up, including what `models list` shows a user
 * choosing a model (family, languages, Immich's Crossmodal-3600 figure): a wrong one is refused by name.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODEL_FAMILIES } from '../src/model/manifest.js';
import { listManifests, MANIFEST_DIR } from '../src/model/model-registry.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-manifests-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('model manifests', () => {
  it('every shipped manifest passes the check; each multilingual one names its languages and family', async () => {
    const manifests = await listManifests();
    expect(manifests.length).toBeGreaterThanOrEqual(10);
    for (const m of manifests) {
      if (m.family !== undefined) expect(MODEL_FAMILIES).toContain(m.family);
      if (m.family === 'nllb-clip' || m.family === 'm-clip') expect(m.languages?.length, m.id).toBeGreaterThan(0);
      for (const v of Object.values(m.crossmodal3600?.recall ?? {})) expect(v).toBeGreaterThan(0);
    }
  });

  const broken: [string, (m: Record<string, unknown>) => void, RegExp][] = [
    ['an unknown family', (m) => (m.family = 'dall-e'), /"family" must be one of clip, siglip/],
    ['a recall over 100', (m) => (m.crossmodal3600 = { recall: { English: 130 }, source: 'x' }), /crossmodal3600\.recall\.English" must be a percentage/],
    ['a figure without its source', (m) => (m.crossmodal3600 = { recall: { English: 60 } }), /"crossmodal3600" needs/],
    ['empty languages', (m) => (m.languages = []), /"languages" must be a non-empty list/],
  ];
  for (const [what, change, message] of broken) {
    it(`refuses a manifest with ${what}, naming the file`, async () => {
      const dir = mkdtempSync(join(tmp, 'dir-'));
      const m = JSON.parse(readFileSync(join(MANIFEST_DIR, 'immich-vit-b-32-openai.json'), 'utf8')) as Record<string, unknown>;
      change(m);
      writeFileSync(join(dir, 'bad.json'), JSON.stringify(m));
      await expect(listManifests(dir)).rejects.toMatchObject({ code: 'MODEL_INVALID', message: expect.stringMatching(message) });
      await expect(listManifests(dir)).rejects.toThrow(/bad\.json/);
    });
  }
});
