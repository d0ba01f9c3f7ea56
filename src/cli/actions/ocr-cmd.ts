// What the commands of commands/ocr-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { ocrEnabledFromEnv, ocrStateOf, type OcrStatus } from '../../ingest/ocr-service.js';
import { libraryLocation, openStore } from '../../store/open-store.js';
import { OcrRepo } from '../../store/ocr-repo.js';
import { globalOptions, log, printJson } from '../context.js';

const onOff = (on: boolean) => (on ? 'on' : 'off');

function why(s: OcrStatus, library: boolean | undefined): string {
  const set = library === undefined ? 'not set' : onOff(library);
  switch (s.source) {
    case 'env':
      return `CLIPDEX_OCR=${onOff(s.enabled)} in this environment, for runs started with it; the library's setting: ${set}`;
    case 'library':
      return "the library's setting";
    case 'default':
      return 'the default';
    case 'option':
      return 'set by the program';
  }
}

export const actionOcr = (value: string | undefined, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const wanted = value === undefined ? undefined : value.trim().toLowerCase();
  if (wanted !== undefined && wanted !== 'on' && wanted !== 'off') throw new ClipdexError('INVALID_ARGUMENT', `clipdex ocr takes on or off, got '${value}'`);
  // A CLIPDEX_OCR that is neither is refused before anything is written.
  const env = ocrEnabledFromEnv();
  // The database alone: no model is needed, and it works beside a running server.
  const store = openStore(libraryLocation(g.dataDir, g.databaseUrl));
  try {
    const repo = new OcrRepo(store.db);
    if (wanted !== undefined) repo.setSetting(wanted === 'on');
    const state = ocrStateOf(repo);
    const library = repo.setting();
    if (g.json) {
      printJson({ ...state, library: library === undefined ? null : onOff(library) });
      return;
    }
    const out = [`Text in photos: ${onOff(state.enabled)} (${why(state, library)})`, `  ${state.done} read, ${state.pending} pending, ${state.failed} failed`];
    if (wanted !== undefined) {
      out.push(
        `Set to ${wanted} for this library${wanted === 'off' ? '; what was read stays searchable' : ''}. A running \`clipdex serve\` applies it at its next start (its page's toggle changes it at once).`,
      );
    }
    process.stdout.write(`${out.join('\n')}\n`);
    // The environment here outranks what was just written: say so, or the change seems to do nothing.
    if (wanted !== undefined && env !== undefined && onOff(env) !== wanted) {
      log(`clipdex: note: CLIPDEX_OCR=${onOff(env)} is set in this environment; runs started with it read ${env ? 'text' : 'nothing'} whatever the library's setting`);
    }
  } finally {
    store.close();
  }
};
