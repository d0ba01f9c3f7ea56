import { Command, Option } from 'commander';
import { modelKeyFor } from '../../library/model-key.js';
import { resolveModel } from '../../model/model-registry.js';
import { QUANT_FORMAT_DEFAULT, QUANT_FORMATS, type QuantFormat } from '../../model/quantize-graph.js';
import { quantizeModel } from '../../model/quantize-model.js';
import { globalOptions, log, printJson } from '../context.js';
import { createProgress, formatBytes } from '../progress.js';

/** `models quantize`: an int8 copy of a model folder, usable with --model and keyed apart from its fp32 source. */
export function modelsQuantizeCommand(): Command {
  return new Command('quantize')
    .description(
      "write an int8 copy of a model (MatMul/Gemm weights per output channel, in the ONNX graph): a smaller folder, faster encodes on ONNX Runtime's CPU int8 kernels; " +
        'its vectors are keyed apart from the fp32 model\'s (a library never mixes them)',
    )
    .argument('<model>', 'a model id (pulled or imported) or a model directory, fp32')
    .requiredOption('--out <dir>', 'folder to write the int8 model into')
    .addOption(
      new Option('--format <name>', `ONNX formulation of the int8 MatMuls (BENCHMARKS.md "int8 models" compares them)`)
        .choices([...QUANT_FORMATS])
        .default(QUANT_FORMAT_DEFAULT),
    )
    .option('--force', 'replace a non-empty output folder')
    .action(async (ref: string, opts: { out: string; format: QuantFormat; force?: boolean }, cmd: Command) => {
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
        if (g.json) return printJson(summary);
        for (const t of result.towers) {
          log(`${t.tower} tower ${t.file}: ${t.weights} weights, ${formatBytes(t.bytesBefore)} → ${formatBytes(t.bytesAfter)}`);
        }
        log(`Wrote the int8 model (${result.format}) to ${result.dir}; use it with --model ${result.dir} (model key ${key}, fp32 ${sourceKey})`);
      } finally {
        bar.stop();
      }
    });
}
