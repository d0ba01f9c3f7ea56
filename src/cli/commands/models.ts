
import { lazyAction } from '../lazy.js';
import { Command, Option } from 'commander';
import { DEFAULT_SEED, PRESET_NAMES } from '../../model/tiny-presets.js';
import { modelsQuantizeCommand } from './models-quantize.js';
import { optionParser } from '../../validation/param-rules.js';
import { seedText } from '../../validation/train-params.js';

export function modelsCommand(): Command {
  const models = new Command('models').description('list, download, import and build CLIP models');

  models
    .command('list')
    .description('the models clipdex knows, which are downloaded, and the ones imported as local-<name>')
    .action(lazyAction(() => import('../actions/models.js'), 'actionList'));

  models
    .command('pull')
    .description('download a model from the hub ($HF_ENDPOINT) into the cache: resumable, verified')
    .argument('<id>', 'model id from `clipdex models list`')
    .action(lazyAction(() => import('../actions/models.js'), 'actionPull'));

  models
    .command('import')
    .description('copy a model directory (either export layout) into the cache, for machines without a network')
    .argument('<dir>', 'a directory holding the model files')
    .option('--as <id>', 'register it as this known model id (its files are checked against the manifest)')
    .option('--name <name>', 'without --as: register as local-<name> (default: the directory name)')
    .action(lazyAction(() => import('../actions/models.js'), 'actionImport'));

  models
    .command('build-tiny')
    .description('write a CLIP- or SigLIP-architecture ONNX model with seeded random weights (for tests, demos, benchmarks)')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(
      new Option(
        '--preset <name>',
        'tiny (fast CLIP), vit-b-32 (real ViT-B/32 shapes and FLOPs), siglip-tiny (SigLIP, SentencePiece Unigram tokenizer, 224 px), ' +
          'siglip2-tiny (SigLIP2, Gemma BPE tokenizer, 256 px), siglip-b-16 (SigLIP base/16 shapes, for benchmarks), ' +
          'xlmr-clip-tiny (M-CLIP XLM-Roberta-Large-Vit-B-16Plus layout, XLM-R Unigram tokenizer, 240 px), ' +
          'mclip-tiny (M-CLIP LABSE-Vit-L-14 layout, BERT WordPiece tokenizer), nllb-siglip-tiny (NLLB-CLIP, FLORES-200 language codes, 384 px)',
      )
        .choices([...PRESET_NAMES])
        .default('tiny'),
    )
    .addOption(
      new Option('--layout <layout>', 'hf (transformers.js export; the default) or openclip (Immich export; the default and only layout of the multilingual presets)').choices([
        'hf',
        'openclip',
      ]),
    )
    .option('--seed <n>', 'weight seed', optionParser(seedText, '--seed'), DEFAULT_SEED)
    .option('--vocab <file>', 'CLIP vocabulary to ship (bpe gz, tokenizer.json, vocab.json or dir); default: byte-level. CLIP presets only')
    .option('--force', 'replace a non-empty output directory')
    .action(lazyAction(() => import('../actions/models.js'), 'actionBuildTiny'));

  models
    .command('use')
    .description("make another model the library's: its photos are encoded again in the background (a running `clipdex serve`, or here with --wait) while searches keep the current model; the switch happens when every photo has a vector. Switching back to a model used before is instant")
    .argument('[model]', 'a model id or directory')
    .option('--wait', 'encode here, with a progress bar, until the switch is done (or follow a server that is doing it)')
    .option('--cancel', 'cancel the switch under way (what was encoded stays: a later `use` goes on from there)')
    .action(lazyAction(() => import('../actions/models.js'), 'actionUse'));

  models
    .command('forget')
    .description("remove a model's vectors and index from the library (never the current model's; photos, labels and trained versions stay)")
    .argument('<model>', 'a model id, directory or model key')
    .option('--yes', 'confirm: its photos would be encoded again to use it later')
    .action(lazyAction(() => import('../actions/models.js'), 'actionForget'));

  models.addCommand(modelsQuantizeCommand());
  return models;
}
