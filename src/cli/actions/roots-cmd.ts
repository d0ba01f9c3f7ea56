// What the commands of commands/roots-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { folderIdentity } from '../../ingest/root-pin.js';
import { libraryLocation, openStore } from '../../store/open-store.js';
import { RootsRepo } from '../../store/roots-repo.js';
import { globalOptions, printJson } from '../context.js';

export const actionConfirm = async (pathArg: string, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const path = resolve(pathArg);
  // The database alone: confirming needs no model, and works beside a running server.
  const store = openStore(libraryLocation(g.dataDir, g.databaseUrl));
  try {
    const repo = new RootsRepo(store.db);
    const root = repo.getByPath(path);
    if (!root) throw new ClipdexError('NOT_FOUND', `${path} is not a watched folder (\`clipdex status\` lists them)`, { details: { path } });
    const now = await folderIdentity(path);
    if (!now) throw new ClipdexError('FILE_NOT_FOUND', `No folder at ${path}`, { details: { path } });
    repo.confirm(root.id, now.realPath, now.identity);
    if (g.json) printJson({ id: root.id, path, folder: now.realPath });
    else process.stdout.write(`${path} now stands for ${now.realPath}; its files are checked again at the next scan\n`);
  } finally {
    store.close();
  }
};
