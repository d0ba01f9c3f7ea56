// Apart from context.ts, which loads the model registry: main.ts maps every error to an exit code, `--help` and
// `--version` included, and loads nothing else it can avoid (see lazy.ts).
import { ClipdexError, type ErrorCode } from '../errors.js';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failure: 1, usage: 2, modelMissing: 3, network: 4 } as const;

const CODE_EXIT: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: EXIT.usage,
  MODEL_NOT_FOUND: EXIT.modelMissing,
  MODEL_UNSUPPORTED: EXIT.modelMissing,
  OFFLINE: EXIT.network,
  DOWNLOAD_FAILED: EXIT.network,
};

export function exitCodeFor(err: unknown): number {
  return err instanceof ClipdexError ? (CODE_EXIT[err.code] ?? EXIT.failure) : EXIT.failure;
}
