
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { optionParser } from '../../validation/param-rules.js';
import { recordIdParam } from '../../validation/id-params.js';

const versionArg = optionParser(recordIdParam, 'a version', 'such as 3; see `clipdex adapters list`');
export function adaptersCommand(): Command {
  const adapters = new Command('adapters').description('trained adapter versions: list, activate, roll back, export');

  adapters
    .command('list')
    .description('every version of the loaded model: when, blend, validation recall before → after, verdict; * marks the active one')
    .action(lazyAction(() => import('../actions/adapters-cmd.js'), 'actionList'));

  adapters
    .command('activate')
    .description('make searches use a version: re-projects the stored embeddings and builds its index (searches are not interrupted)')
    .argument('<version>', 'version number, e.g. 3', versionArg)
    .option('--wait', 'an image-tuned version: re-encode the library here until done (otherwise a running `clipdex serve` does it in the background)')
    .action(lazyAction(() => import('../actions/adapters-cmd.js'), 'actionActivate'));

  adapters
    .command('rollback')
    .description('go back to the base model (default), or to an earlier version; on the model of an image-tuned version, `base` switches back to its base model (instant)')
    .argument('[version]', '"base" or a version number', 'base')
    .action(lazyAction(() => import('../actions/adapters-cmd.js'), 'actionRollback'));

  adapters
    .command('export')
    .description('write a version as a model directory of plain ONNX files; use it with `--model <dir>` or any ONNX runtime')
    .argument('<version>', 'version number', versionArg)
    .option('--out <dir>', 'the folder to create (must not exist, or be empty); default under the data directory')
    .action(lazyAction(() => import('../actions/adapters-cmd.js'), 'actionExport'));

  return adapters;
}
