
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { DEFAULT_FOLDER_TEMPLATE } from '../../train/label-import.js';
import { optionParser } from '../../validation/param-rules.js';
import { listLimitParam, recordIdParam } from '../../validation/id-params.js';

const listLimit = optionParser(listLimitParam, '--limit');
const labelId = optionParser(recordIdParam, 'a label id', 'see `clipdex labels list`');

export function labelCommand(): Command {
  return new Command('label')
    .description('label photos with a caption the trainer learns: `clipdex label photo.jpg "grandma\'s garden"`, or several photos with -c')
    .argument('<photo-and-caption...>', 'photos (paths or ids), then the caption (or give it with --caption)')
    .option('-c, --caption <text>', 'the caption for every photo given')
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionLabel'));
}

export function labelsCommand(): Command {
  const labels = new Command('labels').description('list, import, edit and remove labels (photo/caption pairs for `clipdex train`)');

  labels
    .command('list')
    .description('the labels (id, split, caption, photo) and how many each caption has')
    .option('--caption <text>', 'only labels with exactly this caption')
    .option('--photo <path|id>', 'only the labels of this photo')
    .option('--limit <n>', 'list at most this many labels (the counts cover all)', listLimit, 1000)
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionList'));

  labels
    .command('import')
    .description('add labels from a CSV file (header: photo or path or id, caption) or a JSON array of {photo, caption}')
    .argument('<file>', 'a .csv or .json file')
    .option('--base-dir <dir>', "where relative photo paths start (default: the file's folder)")
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionImport'));

  labels
    .command('import-folder')
    .description('label every indexed photo under a folder with the name of the folder it is in, e.g. fishes/a.jpg → "a photo of fishes"')
    .argument('<folder>', 'a folder of photos already indexed (subfolders become labels of their own)')
    .option('--template <text>', 'the caption, {folder} standing for the folder name', DEFAULT_FOLDER_TEMPLATE)
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionImportFolder'));

  labels
    .command('edit')
    .description('change the caption of a label')
    .argument('<id>', 'label id (see `clipdex labels list`)', labelId)
    .argument('<caption>', 'the new caption')
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionEdit'));

  labels
    .command('rm')
    .description('remove labels')
    .argument('<id...>', 'label ids (see `clipdex labels list`)')
    .action(lazyAction(() => import('../actions/label-cmd.js'), 'actionRm'));

  return labels;
}
