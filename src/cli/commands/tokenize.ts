import { Command } from 'commander';
import { ClipTokenizer } from '../../model/tokenizer.js';
import { resolveModel } from '../../model/model-registry.js';
import { globalOptions, printJson } from '../context.js';
import { optionParser } from '../../validation/param-rules.js';
import { contextLengthParam } from '../../validation/id-params.js';

export function tokenizeCommand(): Command {
  return new Command('tokenize')
    .description('print the CLIP token ids of a phrase as JSON (start and end tokens included)')
    .argument('<text>', 'the phrase')
    .option('--vocab <file>', "bpe_simple_vocab_16e6.txt.gz, tokenizer.json, vocab.json or a directory; default: the model's tokenizer")
    .option('--context <n>', 'truncate to this many tokens, keeping the end token', optionParser(contextLengthParam, '--context'))
    .action(async (text: string, opts: { vocab?: string; context?: number }, cmd: Command) => {
      const g = globalOptions(cmd);
      const source = opts.vocab ?? (await resolveModel(g.modelOrDefault, { cacheRoot: g.cacheDir })).tokenizerPath;
      const tokenizer = await ClipTokenizer.fromFile(source);
      const ids = opts.context ? tokenizer.encodeTruncated(text, opts.context) : tokenizer.encode(text);
      if (g.json) printJson({ text, ids });
      else process.stdout.write(`${JSON.stringify(ids)}\n`);
    });
}
