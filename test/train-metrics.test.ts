import { describe, expect, it } from 'vitest';
import { meanRecall, retrievalMetrics } from '../src/train/retrieval-metrics.js';
import { assignSplit } from '../src/train/pair-split.js';

describe('retrieval metrics', () => {
  // 3 images × 2 texts. Text 0 belongs to images 0 and 1, text 1 to image 2.
  const sims = Float32Array.from([
    0.9, 0.1, // image 0: text 0 first
    0.2, 0.8, // image 1: text 1 first (wrong), text 0 second
    0.3, 0.7, // image 2: text 1 first
  ]);
  const pairs = [
    [0, 0],
    [1, 0],
    [2, 1],
  ] as const;
  const m = retrievalMetrics(sims, 3, 2, pairs);

  it('scores image→text by the rank of the right caption', () => {
    expect(m.imageToText).toEqual({ r1: 0.6667, r5: 1, r10: 1, p5: 1, p10: 1, meanRank: 1.3333, queries: 3 });
  });

  it('scores text→image as the share of queries with a right photo in the top k', () => {
    // Text 0 ranks images 0 (0.9), 2 (0.3), 1 (0.2): right at 1; text 1 ranks 1 (0.8), 2 (0.7): right at 2.
    expect(m.textToImage).toEqual({ r1: 0.5, r5: 1, r10: 1, p5: 1, p10: 1, meanRank: 1.5, queries: 2 });
    expect(meanRecall(m)).toBeCloseTo((0.5 + 1 + 1 + 0.6667 + 1 + 1) / 6, 4);
  });

  it('counts a tie with a wrong answer against the query', () => {
    const tie = retrievalMetrics(Float32Array.from([0.5, 0.5]), 1, 2, [[0, 1]]);
    expect(tie.imageToText.r1).toBe(0);
    expect(tie.imageToText.meanRank).toBe(2);
  });

  it('never has recall@5 below recall@1, even when the top 5 holds fewer right photos than it could', () => {
    // One text, six photos scored 0.9, 0.8, …; the right ones are photos 0 and 5. The old figure (hits in
    // the top k over min(k, right ones)) gave 1 at k = 1 and 0.5 at k = 5.
    const s = Float32Array.from([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]);
    const r = retrievalMetrics(s, 6, 1, [
      [0, 0],
      [5, 0],
    ]).textToImage;
    expect([r.r1, r.r5, r.r10]).toEqual([1, 1, 1]);
    // The share of the top 5 that is right, out of what could be, keeps its own name.
    expect(r.p5).toBe(0.5);
    expect(r.p10).toBe(1);
  });

  it('is 0 at every k when no right answer is in the top k, and rises at the k that first holds one', () => {
    const s = Float32Array.from({ length: 12 }, (_, i) => 1 - i / 12); // image i scores 1 - i/12
    const r = retrievalMetrics(s, 12, 1, [[6, 0]]).textToImage; // the right photo is 7th
    expect([r.r1, r.r5, r.r10, r.meanRank]).toEqual([0, 0, 1, 7]);
  });

  it('handles many right answers (a label with many photos) the same way as few', () => {
    const n = 40;
    const s = Float32Array.from({ length: n }, (_, i) => 1 - i / n); // one text; image i scores 1 - i/n
    const p = Array.from({ length: 20 }, (_, k) => [2 * k, 0] as const); // every even image is right
    const r = retrievalMetrics(s, n, 1, p);
    expect([r.textToImage.r1, r.textToImage.r5, r.textToImage.r10]).toEqual([1, 1, 1]);
    expect(r.textToImage.p5).toBe(0.6); // top 5: images 0..4 → 0, 2, 4 right
    expect(r.textToImage.p10).toBe(0.5);
    // The sorted path (more than 8 right answers) ranks like the counting one: photo 1 right among many.
    const late = retrievalMetrics(s, n, 1, Array.from({ length: 10 }, (_, k) => [30 + k, 0] as const));
    expect([late.textToImage.r10, late.textToImage.meanRank]).toEqual([0, 31]);
  });
});

describe('the split', () => {
  // Content hashes stand for photos: 10 of "a", 3 of "b", 1 of "c", and photo a1 also captioned "d".
  const photo = (caption: string, i: number) => `${caption}${i}-${'0'.repeat(8)}`;
  const pairs = [
    ...Array.from({ length: 10 }, (_, i) => ({ photo: photo('a', i), caption: 'a' })),
    ...Array.from({ length: 3 }, (_, i) => ({ photo: photo('b', i), caption: 'b' })),
    { photo: photo('c', 0), caption: 'c' },
    { photo: photo('a', 1), caption: 'second caption of photo a1' },
  ];
  const shares = { valFraction: 0.2, testFraction: 0.2 };
  const count = (split: Map<string, string>, ids: string[], part: string) => ids.filter((id) => split.get(id) === part).length;

  it('is by photo, stratified by caption, three ways, and stable for a seed', () => {
    const split = assignSplit(pairs, shares, 4);
    expect(split.size).toBe(14);
    const a = Array.from({ length: 10 }, (_, i) => photo('a', i)).filter((p) => p !== photo('a', 1));
    const b = Array.from({ length: 3 }, (_, i) => photo('b', i));
    // a1 counts under its rarer caption (1 photo), so "a" stratifies 9 photos: 2 test, 2 val, 5 train.
    expect([count(split, a, 'test'), count(split, a, 'val'), count(split, a, 'train')]).toEqual([2, 2, 5]);
    expect([count(split, b, 'test'), count(split, b, 'val'), count(split, b, 'train')]).toEqual([1, 1, 1]); // at least one each from 3 photos
    expect(split.get(photo('c', 0))).toBe('train'); // a label with one photo can only teach
    expect(split.get(photo('a', 1))).toBe('train');
    expect(assignSplit([...pairs].reverse(), shares, 4)).toEqual(split);
    expect(assignSplit(pairs, shares, 5)).not.toEqual(split);
  });

  it('gives 2 photos one test and one train photo, and puts everything in train at shares of 0', () => {
    const two = assignSplit([{ photo: 'x', caption: 'k' }, { photo: 'y', caption: 'k' }], shares, 1);
    expect([...two.values()].sort()).toEqual(['test', 'train']);
    expect([...assignSplit(pairs, { valFraction: 0, testFraction: 0 }, 1).values()].every((s) => s === 'train')).toBe(true);
  });
});
