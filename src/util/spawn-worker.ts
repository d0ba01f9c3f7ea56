import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type TransferListItem, Worker } from 'node:worker_threads';
import { ClipdexError, type ErrorCode } from '../errors.js';

/**
 * Starts the worker module `name` that sits beside `callerUrl`: from dist/ the compiled .js; from sources
 * (vitest, tsx) the .ts, loaded through tsx's ESM hooks registered inside the worker (Node 20 does not pass
 * --import hooks on to workers).
 */
export function spawnWorker(
  callerUrl: string,
  name: string,
  workerData: unknown,
  failure: { code: ErrorCode; what: string },
  transferList: TransferListItem[] = [],
): Worker {
  const here = fileURLToPath(callerUrl);
  const js = join(dirname(here), `${name}.js`);
  if (!here.endsWith('.ts') && existsSync(js)) return new Worker(js, { workerData, transferList });
  const ts = join(dirname(here), `${name}.ts`);
  // tsx's public ESM API, resolved through its exports map from here (an eval'd worker resolves from the cwd).
  let tsxApi: string;
  try {
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch (err) {
    throw new ClipdexError(failure.code, `running from TypeScript sources needs tsx to start ${failure.what}`, { cause: err });
  }
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(pathToFileURL(ts).href)}); })`;
  return new Worker(boot, { eval: true, workerData, transferList });
}
