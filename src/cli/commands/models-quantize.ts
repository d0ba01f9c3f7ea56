import { Command, Option } from 'commander';
import { QUANT_FORMAT_DEFAULT, QUANT_FORMATS } from '../../model/quant-formats.js';
import { lazyAction } from '../lazy.js';

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
    .action(lazyAction(() => import('../actions/models-quantize.js'), 'actionQuantize'));
}
