/**
 * 100 search phrases for agreement measures (int8 vs fp32): the kinds of queries people type, from one word to a
 * sentence, over the shared photos' subjects (fish, tools, renewable energy, household objects, the skimage set) and
 * beyond them.
 */
const SUBJECTS = [
  'a fish',
  'a hammer',
  'a saw',
  'a screwdriver',
  'a wind turbine',
  'solar panels',
  'a dam',
  'a cup of coffee',
  'a tabby cat',
  'a rocket',
  'an astronaut',
  'a horse',
  'a red motorcycle',
  'a chair',
  'a light bulb',
  'a baseball',
  'a bucket',
  'a page of text',
  'a camera on a tripod',
  'a geothermal power plant',
];
const FRAMES = ['', 'a photo of ', 'a close-up of ', 'a blurry picture of ', ''];
const CONTEXTS = ['', ' on a table', ' at sunset', ' in the water', ' in a garage'];

export const AGREEMENT_PHRASES: readonly string[] = SUBJECTS.flatMap((s, i) =>
  FRAMES.map((f, j) => `${f}${s}${CONTEXTS[(i + j) % CONTEXTS.length]}`.trim()),
);
