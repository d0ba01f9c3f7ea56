/** `models quantize`'s work, imported when it runs (see lazy.ts). */
import type { Command } from 'commander';
import { modelKeyFor } from '../../library/model-key.js';
import { resolveModel } from '../../model/model-registry.js';
import type { QuantFormat } from '../../model/quantize-graph.js';
import { quantizeModel } from '../../model/quantize-model.js';
import { globalOptions, log, printJson } from '../context.js';
import { createProgress, formatBytes } from '../progress.js';

export async function actionQuantize(ref: string, opts: { out: string; format: QuantFormat; force?: boolean }, cmd: Command): Promise<void> {
      const g = globalOptions(cmd);
      const spec = await resolveModel(ref, { cacheRoot: g.cacheDir });
      const sourceKey = await modelKeyFor(spec, { cacheDir: g.cacheDir });
      const started = Date.now();
      const bar = createProgress(`quantize ${ref}`);
      try {
        const result = await quantizeModel(spec, {
          out: opts.out,
          format: opts.format,
          force: opts.force === true,
          sourceKey,
          sourceRef: ref,
          onProgress: (e) => bar.update(e.done, Math.max(e.total, e.done), `${e.tower} tower: ${e.stage}`),
        });
        bar.stop();
        const key = await modelKeyFor(await resolveModel(result.dir, { cacheRoot: g.cacheDir }), { cacheDir: g.cacheDir });
        const summary = { ...result, sourceKey, key, seconds: (Date.now() - started) / 1000 };
        if (g.json) {
          printJson(summary);
          return;
        }
        for (const t of result.towers) {
          log(`${t.tower} tower ${t.file}: ${t.weights} weights, ${formatBytes(t.bytesBefore)} → ${formatBytes(t.bytesAfter)}`);
        }
        log(`Wrote the int8 model (${result.format}) to ${result.dir}; use it with --model ${result.dir} (model key ${key}, fp32 ${sourceKey})`);
      } finally {
        bar.stop();
      }
    }
