import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { DEFAULT_DUPLICATE_THRESHOLD, duplicateThresholdParam, neighboursParam } from '../../validation/duplicates-params.js';
import { optionParser as option } from '../../validation/param-rules.js';

/**
 * `clipdex duplicates`: the groups, each with the photo to keep and why; `hide`, `unhide`, `trash`, `undo`,
 * `hidden` and `trashed` act on what it lists.
 */
export function duplicatesCommand(): Command {
  const cmd = new Command('duplicates')
    .description(
      `exact copies and near-duplicates, each group with the photo to keep and why. The threshold is a cosine distance: ${DEFAULT_DUPLICATE_THRESHOLD} (the default) joins the same shot re-saved or resized, 0.03 also hard recompression and small edits, 0.1 similar shots`,
    )
    .option('--threshold <d>', `cosine distance under which photos are duplicates, 0.001–0.1 (default ${DEFAULT_DUPLICATE_THRESHOLD})`, option(duplicateThresholdParam, '--threshold'))
    .option('--rotations', 'also match photos turned by 90°, 180° or 270° (encodes the rotations of close pairs: slower)')
    .option('--neighbours <k>', 'neighbours asked per photo (1–100, default 10)', option(neighboursParam, '--neighbours'))
    .action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionDuplicates'));

  cmd.addCommand(
    new Command('hide')
      .description('hide photos from every search, find-similar and listing (the files stay where they are)')
      .argument('<id...>', 'photo ids')
      .action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionHide')),
  );
  cmd.addCommand(
    new Command('unhide')
      .description('show hidden photos in search again')
      .argument('<id...>', 'photo ids')
      .action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionUnhide')),
  );
  cmd.addCommand(
    new Command('hidden').description('list the photos hidden from search').action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionHidden')),
  );
  cmd.addCommand(
    new Command('trash')
      .description("move photos to their watched folder's .clipdex-trash folder (never deleted; `undo` puts them back)")
      .argument('<id...>', 'photo ids')
      .action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionTrash')),
  );
  cmd.addCommand(
    new Command('undo')
      .description('put trashed photos back where they were (same id, labels and all)')
      .argument('<trash-id...>', 'trash ids, as `trash` and `trashed` print them')
      .action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionUndo')),
  );
  cmd.addCommand(
    new Command('trashed').description('list the photos in the trash folders that can be put back').action(lazyAction(() => import('../actions/duplicates-cmd.js'), 'actionTrashed')),
  );
  return cmd;
}
