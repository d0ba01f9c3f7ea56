import { lazyAction } from '../lazy.js';
import { Command } from 'commander';

/** `clipdex ocr [on|off]`: the library's text-in-photos setting, which `serve` and `index` start with. */
export function ocrCommand(): Command {
  return new Command('ocr')
    .argument('[on|off]', 'turn reading the text in photos on or off for this library; without it, show the state')
    .description("read the text in photos (on by default): show the library's setting and progress, or turn it on or off")
    .addHelpText(
      'after',
      '\nOff reads nothing more; what was read stays searchable. The setting is kept in the library: a running `clipdex serve` applies it ' +
        'at its next start (its page, or PUT /api/ocr, changes it at once). CLIPDEX_OCR=on|off overrides it for one run.',
    )
    .action(lazyAction(() => import('../actions/ocr-cmd.js'), 'actionOcr'));
}
