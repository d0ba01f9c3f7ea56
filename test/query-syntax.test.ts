/**
 * The search box's syntax on a table of phrases, with a fixed clock: which words become a date filter (and
 * which must not: "the 1975 band", "room 2023"), alternatives, negations, quotes; and how a parsed query
 * becomes the engine's request.
 */
import { describe, expect, it } from 'vitest';
import { parseQueryText, plainQuery, searchRequestOf, withParsedDate, type UnderstoodPart } from '../src/search/query-syntax.js';

// Thursday 3 December 2026, noon local time: the table's days hold in any time zone the test runs in.
const now = new Date(2026, 11, 3, 12);

const phrase = (text: string): UnderstoodPart => ({ kind: 'phrase', text });
const or = (...phrases: string[]): UnderstoodPart => ({ kind: 'or', phrases });
const not = (text: string): UnderstoodPart => ({ kind: 'not', text });
const date = (text: string, from?: string, to?: string): UnderstoodPart => ({ kind: 'date', text, ...(from ? { from } : {}), ...(to ? { to } : {}) });

const TABLE: [string, UnderstoodPart[]][] = [
  // The phrases.
  ['beach July 2023', [phrase('beach'), date('July 2023', '2023-07-01', '2023-08-01')]],
  ['birthday 2019', [phrase('birthday'), date('2019', '2019-01-01', '2020-01-01')]],
  ['snow last winter', [phrase('snow'), date('last winter', '2025-12-01', '2026-03-01')]],
  ['dog -cat', [phrase('dog'), not('cat')]],
  ['cat | dog', [or('cat', 'dog')]],
  ['the 1975 band', [phrase('the 1975 band')]],
  ['room 2023', [phrase('room 2023')]],
  // Numbers that are names, not years.
  ['the 1975', [phrase('the 1975')]],
  ['2001 space odyssey', [phrase('2001 space odyssey')]],
  ['iphone 2019', [phrase('iphone 2019')]],
  ['covid-2019', [phrase('covid-2019')]],
  ['room "2023"', [phrase('room 2023')]],
  ['2027', [phrase('2027')]],
  // Dashes that are not negations.
  ['t-shirt', [phrase('t-shirt')]],
  ['-5 degrees', [phrase('-5 degrees')]],
  // Month names that are words.
  ['kids may play', [phrase('kids may play')]],
  ['march protest', [phrase('march protest')]],
  ['May', [phrase('May')]],
  ['cat in may', [phrase('cat'), date('in may', '2026-05-01', '2026-06-01')]],
  ['picnic may 2019', [phrase('picnic'), date('may 2019', '2019-05-01', '2019-06-01')]],
  // Holidays are what the encoder knows; the year filters.
  ['christmas 2020', [phrase('christmas'), date('2020', '2020-01-01', '2021-01-01')]],
  // Ranges and open ends.
  ['photos from 2019 to 2021', [phrase('photos'), date('from 2019 to 2021', '2019-01-01', '2022-01-01')]],
  ['between 2019 and 2021', [phrase('between 2019 and 2021'), date('between 2019 and 2021', '2019-01-01', '2022-01-01')]],
  ['beach 2019-2021', [phrase('beach'), date('2019-2021', '2019-01-01', '2022-01-01')]],
  ['Jan 2020 - Mar 2020', [phrase('Jan 2020 - Mar 2020'), date('Jan 2020 - Mar 2020', '2020-01-01', '2020-04-01')]],
  ['kids before 2010', [phrase('kids'), date('before 2010', undefined, '2010-01-01')]],
  ['kids after March 2021', [phrase('kids'), date('after March 2021', '2021-04-01')]],
  ['garden since 2020', [phrase('garden'), date('since 2020', '2020-01-01')]],
  ['in 2019 at the beach', [phrase('at the beach'), date('in 2019', '2019-01-01', '2020-01-01')]],
  // Seasons (northern hemisphere) and relative dates, from the fixed now.
  ['last summer', [phrase('last summer'), date('last summer', '2026-06-01', '2026-09-01')]],
  ['kayak summer of 2019', [phrase('kayak'), date('summer of 2019', '2019-06-01', '2019-09-01')]],
  ['skiing winter 2020/21', [phrase('skiing'), date('winter 2020/21', '2020-12-01', '2021-03-01')]],
  ['summer dress', [phrase('summer dress')]],
  ['yesterday', [phrase('yesterday'), date('yesterday', '2026-12-02', '2026-12-03')]],
  ['dog last week', [phrase('dog'), date('last week', '2026-11-23', '2026-11-30')]],
  ['dog 3 days ago', [phrase('dog'), date('3 days ago', '2026-11-30', '2026-12-01')]],
  ['wedding 2 years ago', [phrase('wedding'), date('2 years ago', '2024-01-01', '2025-01-01')]],
  ['cake last month', [phrase('cake'), date('last month', '2026-11-01', '2026-12-01')]],
  ['party last sunday', [phrase('party'), date('last sunday', '2026-11-29', '2026-11-30')]],
  ['beach July 4 2023 at 5pm', [phrase('beach'), date('July 4 2023 at 5pm', '2023-07-04', '2023-07-05')]],
  // Times of day and weekdays alone stay words.
  ['a 5 pm party', [phrase('a 5 pm party')]],
  ['sunday brunch', [phrase('sunday brunch')]],
  // Quotes, negations and alternatives together.
  ['"the 1975" live', [phrase('the 1975 live')]],
  ['"the 1975" 2019', [phrase('the 1975'), date('2019', '2019-01-01', '2020-01-01')]],
  ['beach -"ice cream" 2019', [phrase('beach'), not('ice cream'), date('2019', '2019-01-01', '2020-01-01')]],
  ['cat | dog July 2023 -bird', [or('cat', 'dog'), not('bird'), date('July 2023', '2023-07-01', '2023-08-01')]],
  ['cat 2019 | dog 2021', [or('cat', 'dog'), date('2019, 2021', '2019-01-01', '2022-01-01')]],
  ['cat ||  | dog', [or('cat', 'dog')]],
  ['a sign "open | closed"', [phrase('a sign open | closed')]],
  ['-cat', [not('cat')]],
];

describe('parseQueryText', () => {
  it.each(TABLE)('%s', (text, understood) => {
    expect(parseQueryText(text, { now }).understood).toEqual(understood);
  });

  it('gives the engine milliseconds: from inclusive, to exclusive, calendar days in UTC', () => {
    expect(parseQueryText('beach July 2023', { now }).date).toEqual({ text: 'July 2023', takenFrom: Date.UTC(2023, 6, 1), takenTo: Date.UTC(2023, 7, 1) });
    expect(parseQueryText('kids before 2010', { now }).date).toEqual({ text: 'before 2010', takenTo: Date.UTC(2010, 0, 1) });
  });

  it('counts "last winter" from the day it is asked: in February, the winter before the one under way', () => {
    expect(parseQueryText('snow last winter', { now: new Date(2026, 1, 10, 12) }).understood).toContainEqual(date('last winter', '2024-12-01', '2025-03-01'));
    expect(parseQueryText('snow this winter', { now: new Date(2026, 1, 10, 12) }).understood).toContainEqual(date('this winter', '2025-12-01', '2026-03-01'));
  });

  it('refuses more alternatives than a search runs', () => {
    expect(() => parseQueryText('a | b | c | d | e | f | g | h | i', { now })).toThrow(/at most 8 alternatives/);
  });

  it('reads nothing into plain text', () => {
    expect(plainQuery(' dog -cat July 2023 ')).toEqual({ phrases: ['dog -cat July 2023'], negatives: [], date: null, understood: [phrase('dog -cat July 2023')] });
  });
});

describe('searchRequestOf', () => {
  it('makes one query per alternative, with the negations and extra terms in each, and the date as the filter', () => {
    const parsed = parseQueryText('cat | dog July 2023 -bird', { now });
    expect(searchRequestOf(parsed, { terms: [{ imageId: 7 }], limit: 10, filter: { folder: '/photos' } })).toEqual({
      terms: [{ text: 'bird', weight: -1 }, { imageId: 7 }],
      anyOf: [[{ text: 'cat' }], [{ text: 'dog' }]],
      limit: 10,
      filter: { folder: '/photos', takenFrom: Date.UTC(2023, 6, 1), takenTo: Date.UTC(2023, 7, 1) },
    });
    expect(searchRequestOf(parseQueryText('dog -cat', { now }))).toEqual({ terms: [{ text: 'dog' }, { text: 'cat', weight: -1 }] });
  });

  it('keeps both a given date filter and the one in the text: their intersection', () => {
    const july = parseQueryText('beach July 2023', { now }).date;
    expect(withParsedDate({ takenFrom: Date.UTC(2023, 6, 15) }, july)).toEqual({ takenFrom: Date.UTC(2023, 6, 15), takenTo: Date.UTC(2023, 7, 1) });
    expect(withParsedDate({ takenTo: Date.UTC(2024, 0, 1), formats: ['jpeg'] }, july)).toEqual({ takenFrom: Date.UTC(2023, 6, 1), takenTo: Date.UTC(2023, 7, 1), formats: ['jpeg'] });
    expect(withParsedDate({ folder: '/x' }, null)).toEqual({ folder: '/x' });
  });
});
