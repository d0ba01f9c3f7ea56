
import { lazyAction } from '../lazy.js';
import { Command, Option } from 'commander';
import type { z } from 'zod';
import {
  browseOffsetParam,
  browseSortParam,
  dateParam,
  folderParam,
  formatListParam,
  IMAGE_FORMATS,
  limitParam,
  MAX_LIMIT,
  languageParam,
  minScoreRatioParam,
  searchOffsetParam,
  searchSortParam,
} from '../../validation/search-params.js';
import { optionParser as option } from '../../validation/param-rules.js';
import { DEFAULT_STRONG_RATIO } from '../../search/relevance-cutoff.js';
import { parseQueryPrecision } from '../../model/query-precision.js';

/** Paging and the filters, shared by the searches and `list`; values are checked by the same rules as the API's. */
function addPagingAndFilters(cmd: Command, what: string, limit: number, offset: z.ZodType<number>): Command {
  return cmd
    .option('-k, --limit <n>', `how many ${what} (at most ${MAX_LIMIT})`, option(limitParam, '--limit'), limit)
    .option('--offset <n>', `skip this many ${what} (paging)`, option(offset, '--offset'))
    .option('--folder <dir>', 'only photos under this folder', option(folderParam, '--folder'))
    .option('--after <date>', 'only photos taken on or after this date (YYYY-MM-DD)', option(dateParam, '--after'))
    .option('--before <date>', 'only photos taken before this date', option(dateParam, '--before'))
    .option('--format <list>', `only these formats, e.g. jpeg,png (${IMAGE_FORMATS.join(', ')}; jpg, tif and heif work too)`, option(formatListParam, '--format'));
}

function addCommonOptions(cmd: Command): Command {
  return addPagingAndFilters(cmd, 'results', 20, searchOffsetParam)
    .addOption(new Option('--sort <order>', 'result order').choices(searchSortParam.options))
    .option('--min-score-ratio <r>', `keep only results scoring at least this share (0-1) of the best (default: strong from ${DEFAULT_STRONG_RATIO} of the best, weaker ones counted)`, option(minScoreRatioParam, '--min-score-ratio'))
    .option('--all', 'print the weaker matches too, after the strong ones (--json always carries both)')
    .option('--local', 'search in this process, loading the model, even when `clipdex serve` runs for this library (by default a running server answers: no model to load)');
}

export function searchCommand(): Command {
  const cmd = new Command('search')
    .description(
      'find photos by a phrase; dates in it filter ("beach July 2023", "snow last winter"), "cat | dog" searches either, -word subtracts, "quoted text" is literal; --add/--subtract mix in more phrases, photos (paths) or photo ids',
    )
    .argument('[phrase...]', 'what to look for, e.g. "dog asleep on the sofa" or "beach July 2023 -people"')
    .option('--plain', 'take the phrase as written: no dates, | or -word')
    .option('--no-text', 'CLIP alone: leave the text read in photos (OCR) out of the ranking; by default photos whose text has the words rank too, marked [text], and "quoted" words must be in it')
    .option('--lang <code>', 'the phrase\'s language, for a model that takes one (NLLB-CLIP): de, pt-BR or deu_Latn (default: detected)', option(languageParam, '--lang'))
    .option('--add <term...>', 'another phrase, image path or photo id to add')
    .option('--subtract <term...>', 'a phrase, image path or photo id to subtract (e.g. "people")')
    .option(
      '--query-precision <p>',
      'the text tower for the phrases: fp32 (default) or int8 (quantized once into the cache dir; env CLIPDEX_QUERY_PRECISION); given here, the search runs in this process (a running server encodes at its own precision)',
      (v: string) => parseQueryPrecision(v, '--query-precision'),
    );
  addCommonOptions(cmd).action(lazyAction(() => import('../actions/search.js'), 'actionSearch'));
  return cmd;
}

export function similarCommand(): Command {
  const cmd = new Command('similar').description('find photos similar to a photo: an indexed photo id, or any image file').argument('<path|id>', 'photo id or image path');
  addCommonOptions(cmd).action(lazyAction(() => import('../actions/search.js'), 'actionSimilar'));
  return cmd;
}

/** `clipdex list`: the library itself, newest first, under the same filters as a search. */
export function listCommand(): Command {
  return addPagingAndFilters(new Command('list').description('list indexed photos, newest first (or oldest first, or by path), under the search filters'), 'photos', 50, browseOffsetParam)
    .addOption(new Option('--sort <order>', 'order').choices(browseSortParam.options).default('date-desc'))
    .action(lazyAction(() => import('../actions/search.js'), 'actionList'));
}
