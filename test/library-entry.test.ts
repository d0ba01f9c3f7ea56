/** The package as a dependent imports it: `import … from 'clipdex'` resolves through package.json exports to dist/. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from './helpers/shared.js';

const built = existsSync(join(projectRoot, 'dist', 'index.js'));

describe.skipIf(!built)(`library entry 'clipdex'${built ? '' : ' (skipped: dist/ not built; npm test builds it)'}`, () => {
  it('exports the runtime with its types', async () => {
    const lib = await import('clipdex');
    for (const name of ['ClipModel', 'ClipTokenizer', 'resolveModel', 'buildTinyModel', 'pullModel', 'preprocessBatch', 'ClipdexError', 'Library', 'QueryEngine', 'IngestEngine', 'startServer']) {
      expect(lib, name).toHaveProperty(name);
    }
    expect(existsSync(join(projectRoot, 'dist', 'index.d.ts'))).toBe(true);
    const tok = lib.ClipTokenizer.fromVocabAndMerges(lib.byteLevelVocabulary().vocab, []);
    const ids = tok.encode('a');
    expect(ids).toHaveLength(3);
    expect([ids[0], ids[2]]).toEqual([tok.startId, tok.endId]);
    expect(ids[1]).toBeLessThan(512);
  });
});
