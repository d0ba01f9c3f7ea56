import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { optionParser } from '../../validation/param-rules.js';
import { contextLengthParam } from '../../validation/id-params.js';

export function tokenizeCommand(): Command {
  return new Command('tokenize')
    .description('print the CLIP token ids of a phrase as JSON (start and end tokens included)')
    .argument('<text>', 'the phrase')
    .option('--vocab <file>', "bpe_simple_vocab_16e6.txt.gz, tokenizer.json, vocab.json or a directory; default: the model's tokenizer")
    .option('--context <n>', 'truncate to this many tokens, keeping the end token', optionParser(contextLengthParam, '--context'))
    .action(lazyAction(() => import('../actions/tokenize.js'), 'actionTokenize'));
}
