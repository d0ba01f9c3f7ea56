
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check the model, execution providers, directories, the library database and limits, with a fix for each problem')
    .option('--full', 'check the library database with the slower integrity_check instead of quick_check')
    .addHelpText(
      'after',
      '\nExit code: 0 when nothing clipdex needs is missing (warnings, marked !, leave it 0); 1 when a check failed (marked ✗).',
    )
    .action(lazyAction(() => import('../actions/doctor.js'), 'actionDoctor'));
}
