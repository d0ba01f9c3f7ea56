/**
 * `clipdex train`: fine-tunes an adapter on the labels, shows each epoch as it ends, then what changed on
 * the test photos (which no choice saw) with how sure that is, and saves the adapter as a new version
 * (activated only with --activate, and only when the gain's interval is above 0).
 */
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { optionParser } from '../../validation/param-rules.js';
import { batchSizeText, epochsText, imageBlocksText, learningRateText, loraText, patienceText, seedText, testFractionText, textBlocksText, valFractionText } from '../../validation/train-params.js';

export function trainCommand(): Command {
  return new Command('train')
    .description('teach the model your labels: fine-tune an adapter, report before/after on test photos no choice saw (with a 90% interval), save it as a new version')
    .option('--epochs <n>', 'at most this many epochs (early stopping usually ends sooner; default 100)', optionParser(epochsText, '--epochs'))
    .option('--batch <n>', 'pairs per batch (default 256)', optionParser(batchSizeText, '--batch'))
    .option('--val-split <share>', 'share of labeled photos held out to choose the epoch and blend (default 0.2; under 30 photos cross-validation chooses instead)', optionParser(valFractionText, '--val-split'))
    .option('--test-split <share>', 'share of labeled photos held out from every choice to judge the result (default 0.2)', optionParser(testFractionText, '--test-split'))
    .option('--seed <n>', 'random seed: the same seed and labels give the same adapter (default 1)', optionParser(seedText, '--seed'))
    .option('--lr <rate>', 'learning rate (default 0.002)', optionParser(learningRateText, '--lr'))
    .option('--patience <n>', 'stop after this many epochs without a better validation loss (default 8)', optionParser(patienceText, '--patience'))
    .option('--text-blocks <k>', 'also tune the last k blocks of the text tower (no photo is re-encoded) and save whichever of it and the adapter scores higher on the selection step (default 0: the adapter alone)', optionParser(textBlocksText, '--text-blocks'))
    .option('--image-blocks <k>', 'also tune the last k blocks of the image tower and save whichever of it and the adapter scores higher on the selection step; activating such a version re-encodes every photo (the report says how long); with --text-blocks too, both towers are tuned (the image blocks first, then the text blocks against them) and that joint candidate is weighed against the adapter (default 0)', optionParser(imageBlocksText, '--image-blocks'))
    .option('--lora <r>', 'with --text-blocks or --image-blocks: low-rank updates of rank r instead of full weights (default 0: full)', optionParser(loraText, '--lora'))
    .option('--activate', 'use the new adapter for searches right away, if its gain on the test photos is supported (90% interval above 0)')
    .action(lazyAction(() => import('../actions/train-cmd.js'), 'actionTrain'));
}
