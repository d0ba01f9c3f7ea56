// What the commands of commands/tokenize.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import type { Command } from 'commander';
import { ClipTokenizer } from '../../model/tokenizer.js';
import { resolveModel } from '../../model/model-registry.js';
import { globalOptions, printJson } from '../context.js';

export const actionTokenize = async (text: string, opts: { vocab?: string; context?: number }, cmd: Command) => {
  const g = globalOptions(cmd);
  const source = opts.vocab ?? (await resolveModel(g.modelOrDefault, { cacheRoot: g.cacheDir })).tokenizerPath;
  const tokenizer = await ClipTokenizer.fromFile(source);
  const ids = opts.context ? tokenizer.encodeTruncated(text, opts.context) : tokenizer.encode(text);
  if (g.json) printJson({ text, ids });
  else process.stdout.write(`${JSON.stringify(ids)}\n`);
};
