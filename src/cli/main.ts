#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { errorMessage, isClipdexError } from '../errors.js';
import { dataDir } from '../model/cache-dir.js';
import { adaptersCommand } from './commands/adapters-cmd.js';
import { doctorCommand } from './commands/doctor.js';
import { duplicatesCommand } from './commands/duplicates-cmd.js';
import { workerCommand } from './commands/worker-cmd.js';
import { indexCommand } from './commands/index-cmd.js';
import { labelCommand, labelsCommand } from './commands/label-cmd.js';
import { modelsCommand } from './commands/models.js';
import { migrateCommand } from './commands/migrate-cmd.js';
import { ocrCommand } from './commands/ocr-cmd.js';
import { listCommand, searchCommand, similarCommand } from './commands/search.js';
import { rootsCommand } from './commands/roots-cmd.js';
import { serveCommand } from './commands/serve.js';
import { statusCommand } from './commands/status.js';
import { tokenizeCommand } from './commands/tokenize.js';
import { trainCommand } from './commands/train-cmd.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { startupMark } from '../util/startup-trace.js';

startupMark('cli imported');

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export function createProgram(): Command {
  const program = new Command('clipdex')
    .version(version, '-V, --version')
    .description('Local semantic photo search with CLIP: index folders, search by phrase or by photo, teach it your words.')
    .option('--model <id|dir>', 'model id from `clipdex models list`, or a model directory (env CLIPDEX_MODEL)')
    .option('--data-dir <dir>', 'where the library lives (env CLIPDEX_DATA_DIR; default ~/.local/share/clipdex)')
    .option('--db <url>', 'keep the library in PostgreSQL + pgvector at postgres://user:password@host/database instead of a SQLite file in the data dir (env CLIPDEX_DATABASE_URL)')
    .option('--cache-dir <dir>', 'where downloaded models live (env CLIPDEX_CACHE_DIR; default ~/.cache/clipdex)')
    .option('--json', 'machine-readable output on stdout; logs on stderr')
    .showHelpAfterError()
    .exitOverride();
  program.addCommand(tokenizeCommand());
  program.addCommand(modelsCommand());
  program.addCommand(doctorCommand());
  program.addCommand(searchCommand());
  program.addCommand(similarCommand());
  program.addCommand(listCommand());
  program.addCommand(serveCommand());
  program.addCommand(indexCommand());
  program.addCommand(workerCommand());
  program.addCommand(statusCommand());
  program.addCommand(rootsCommand());
  program.addCommand(ocrCommand());
  program.addCommand(migrateCommand());
  program.addCommand(labelCommand());
  program.addCommand(labelsCommand());
  program.addCommand(trainCommand());
  program.addCommand(adaptersCommand());
  program.addCommand(duplicatesCommand());
  // Subcommands inherit exitOverride only when set on each; errors are mapped in one place below.
  for (const cmd of program.commands) cmd.exitOverride();
  for (const cmd of program.commands.flatMap((c) => c.commands)) cmd.exitOverride();
  return program;
}

// Not context.ts's log: that module loads the model registry, which `--version` has no use for.
function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (caught) {
    let err = caught;
    if (err instanceof CommanderError) {
      // Help and version are "errors" to commander; they printed already.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    // Damaged pages first read by a query (after the library opened) get the same report as at open.
    if (!isClipdexError(err)) {
      const { libraryDamagedError, libraryPaths } = await import('../store/database.js');
      err = libraryDamagedError(err, libraryPaths(dataDir(program.opts<{ dataDir?: string }>().dataDir)).database) ?? err;
    }
    const wantsJson = argv.includes('--json');
    if (wantsJson) {
      process.stdout.write(
        `${JSON.stringify({ error: { code: isClipdexError(err) ? err.code : 'INTERNAL', message: errorMessage(err) } })}\n`,
      );
    }
    log(`clipdex: ${errorMessage(err)}`);
    if (!isClipdexError(err) && process.env.CLIPDEX_DEBUG) log(String((err as Error)?.stack ?? err));
    return exitCodeFor(err);
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    log(`clipdex: ${errorMessage(err)}`);
    process.exitCode = EXIT.failure;
  },
);
