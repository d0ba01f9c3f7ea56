/**
 * How every parameter rule reads a value and how a refusal reads. A rule is a zod schema over the value a
 * program passes (a number); `fromText` lets the same rule read what a person typed (a command-line option,
 * a query string), so the CLI, the API and the library refuse a value with the same words.
 */
import { z } from 'zod';
import { ClipdexError } from '../errors.js';

const WHOLE_NUMBER = /^\s*[+-]?\d+\s*$/;

/** An integer in [min, max]; a number only (a JSON body, a library call). */
export function intRule(min: number, max: number) {
  // An id's upper bound (2^53 − 1) says nothing to a person: no bound is named then.
  const message = max < Number.MAX_SAFE_INTEGER ? `must be an integer from ${min} to ${max}` : min === 1 ? 'must be a positive integer' : `must be an integer of at least ${min}`;
  return z.number({ error: message }).int(message).min(min, message).max(max, message);
}

/** An integer rule that also reads the digits of a query string or a command-line option. */
export function intText<T extends z.ZodType>(rule: T) {
  // "", "1e3", "0x10" and "12abc" are not whole numbers, though Number() would read some of them as one.
  return z.preprocess((v) => (typeof v === 'string' && WHOLE_NUMBER.test(v) ? Number(v) : v), rule);
}

/** An integer in [min, max], as a number or as the digits of a query string or a command-line option. */
export function intParam(min: number, max: number) {
  return intText(intRule(min, max));
}

/** A number rule that also reads decimal text ("0.2", "2e-3"); an empty text stays text, and is refused. */
export function fromText<T extends z.ZodType>(rule: T) {
  return z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), rule);
}

/** One value through its rule, a failure as INVALID_ARGUMENT naming it ("--after must be …, got …"). */
export function parseParam<T>(schema: z.ZodType<T>, value: unknown, name: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const message = result.error.issues[0]?.message ?? 'is not valid';
  // A long value is cut: a 1000-character phrase need not come back in full.
  const json = JSON.stringify(value) ?? String(value);
  const got = json.length > 100 ? `${json.slice(0, 100)}…` : json;
  throw new ClipdexError('INVALID_ARGUMENT', `${name} ${message}${message.includes(got) ? '' : `, got ${got}`}`, { cause: result.error });
}

/**
 * A command-line option's parser from a rule: a bad value fails with the option's name (exit 2), and with
 * `hint` (where to find a valid value) after it.
 */
export function optionParser<T>(schema: z.ZodType<T>, flag: string, hint?: string): (value: string) => T {
  return (value) => {
    try {
      return parseParam(schema, value, flag);
    } catch (err) {
      if (!hint || !(err instanceof ClipdexError)) throw err;
      throw new ClipdexError(err.code, `${err.message} (${hint})`, { cause: err.cause });
    }
  };
}
