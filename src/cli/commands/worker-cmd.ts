import { lazyAction } from '../lazy.js';
import { Command } from 'commander';

const collect = (value: string, previous: string[]) => [...previous, value];

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'encode photos for a library in Postgres (--db postgres://… or CLIPDEX_DATABASE_URL) that `clipdex serve` scans: ' +
        'run one per GPU or CPU machine; each claims queued photos under a lease, so none is encoded twice and a stopped worker\'s photos go to the others',
    )
    .option('--path-map <LIBRARY=LOCAL>', 'read the library folder LIBRARY at LOCAL on this machine (repeatable), e.g. /srv/photos=/mnt/nas/photos', collect, [])
    .option('--lease <seconds>', 'how long a claim lasts without renewal: a killed worker\'s photos wait this long (default 60)', '60')
    .option('--exit-when-idle', 'exit once nothing is left in the queue (a batch job), instead of waiting for more')
    .action(lazyAction(() => import('../actions/worker-cmd.js'), 'actionWorker'));
}
