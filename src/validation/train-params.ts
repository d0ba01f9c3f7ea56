/**
 * The one rule for each training option. The API's body, the split preview's query, the CLI's options and
 * the trainer itself parse through these, so `--epochs 2.5` and `{"epochs": 2.5}` are refused by the same
 * words. Each rule takes numbers (a JSON body, a library call); the `Text` forms also read what a person
 * typed.
 */
import { z } from 'zod';
import { fromText, intRule, intText } from './param-rules.js';

export const epochsRule = intRule(1, 10_000);
export const batchSizeRule = intRule(2, 65_536);
export const patienceRule = intRule(1, 10_000);
export const seedRule = intRule(0, 2 ** 31 - 1);

const LEARNING_RATE = 'must be in (0, 1)';
export const learningRateRule = z.number({ error: LEARNING_RATE }).gt(0, LEARNING_RATE).lt(1, LEARNING_RATE);

// At least a tenth of the labeled photos stay for training (the service also refuses val + test above 0.9).
const VAL_FRACTION = 'must be a number from 0 to 0.9';
export const valFractionRule = z.number({ error: VAL_FRACTION }).min(0, VAL_FRACTION).max(0.9, VAL_FRACTION);

const TEST_FRACTION = 'must be a number from 0 to 0.9';
export const testFractionRule = z.number({ error: TEST_FRACTION }).min(0, TEST_FRACTION).max(0.9, TEST_FRACTION);
export const foldsRule = intRule(2, 20);
// Text blocks tuned from the top (0 = the adapters alone); the model's own depth is checked when its tower is read.
export const textBlocksRule = intRule(0, 64);
// Image blocks tuned from the top (0 = none); the model's own depth is checked when its tower is read.
export const imageBlocksRule = intRule(0, 64);
// LoRA rank of the tuned text blocks (0 = full weights); the model's text width is checked with its tower.
export const loraRule = intRule(0, 4096);

// Library-only options: neither the CLI nor the API sets them.
const IDENTITY_PENALTY = 'must be in [0, 100)';
export const identityPenaltyRule = z.number({ error: IDENTITY_PENALTY }).min(0, IDENTITY_PENALTY).lt(100, IDENTITY_PENALTY);
const BLENDS = 'must be numbers in [0, 1]';
export const blendsRule = z.array(z.number({ error: BLENDS }).min(0, BLENDS).max(1, BLENDS), { error: BLENDS }).min(1, BLENDS);

/** What a training request may set, as numbers: POST /api/training's body. */
export const trainRequestShape = {
  epochs: epochsRule.optional(),
  batchSize: batchSizeRule.optional(),
  valFraction: valFractionRule.optional(),
  testFraction: testFractionRule.optional(),
  seed: seedRule.optional(),
  learningRate: learningRateRule.optional(),
  patience: patienceRule.optional(),
  textBlocks: textBlocksRule.optional(),
  imageBlocks: imageBlocksRule.optional(),
  lora: loraRule.optional(),
};

/** The same rules reading text: command-line options and query strings. */
export const epochsText = intText(epochsRule);
export const batchSizeText = intText(batchSizeRule);
export const patienceText = intText(patienceRule);
export const seedText = intText(seedRule);
export const learningRateText = fromText(learningRateRule);
export const valFractionText = fromText(valFractionRule);
export const testFractionText = fromText(testFractionRule);
export const textBlocksText = intText(textBlocksRule);
export const loraText = intText(loraRule);
export const imageBlocksText = intText(imageBlocksRule);
