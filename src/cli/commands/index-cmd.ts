import { lazyAction } from '../lazy.js';
import { Command } from 'commander';

const collect = (value: string, previous: string[]) => [...previous, value];
export function indexCommand(): Command {
  return new Command('index')
    .description(
      'index folders once and exit: new and changed photos are encoded, moved ones recognised, deleted ones removed; ' +
        'the folders are remembered (`clipdex index` alone updates them all, `clipdex serve` keeps watching them)',
    )
    .argument('[dirs...]', 'folders to index (default: every folder indexed before)')
    .option('--exclude <glob>', 'skip files and folders matching this glob (repeatable); remembered with the folders given', collect, [])
    .option('--no-watch', 'do not watch for changes made while indexing runs (saves file watches on very large trees)')
    .action(lazyAction(() => import('../actions/index-cmd.js'), 'actionIndex'));
}
