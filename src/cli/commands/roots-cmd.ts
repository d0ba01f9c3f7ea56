
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';

/** `clipdex roots confirm <path>`: the CLI's way to accept a retargeted root (the web page has a button). */
export function rootsCommand(): Command {
  const roots = new Command('roots').description('the watched folders');
  roots.addCommand(
    new Command('confirm')
      .argument('<path>', 'a watched folder, as it was added')
      .description(
        "accept the folder a watched folder's path leads to now, after it was pointed elsewhere (a retargeted symlink): " +
          'its files are all checked again at the next `clipdex index`, or by a running server within seconds',
      )
      .action(lazyAction(() => import('../actions/roots-cmd.js'), 'actionConfirm')),
  );
  return roots;
}
