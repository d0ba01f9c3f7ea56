import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { optionParser } from '../../validation/param-rules.js';
import { listLimitParam } from '../../validation/id-params.js';

export function statusCommand(): Command {
  return new Command('status')
    .description('what the library holds: indexed, pending, failed and offline files, folders, model and index health')
    .option('--errors', 'list the files that failed, with the reason for each')
    .option('--limit <n>', 'with --errors: list at most this many', optionParser(listLimitParam, '--limit'))
    .addHelpText(
      'after',
      '\nExit code: 0 when the library and its model are ready; 3 when the model is missing or unsupported, 1 when it cannot be ' +
        'loaded (the report is printed either way); 1 when the library database cannot be opened (damaged or lost).',
    )
    .action(lazyAction(() => import('../actions/status.js'), 'actionStatus'));
}
