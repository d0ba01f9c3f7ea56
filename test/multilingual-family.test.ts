/**
 * The multilingual families on self-built models in Immich's layout (the only ONNX layout they have):
 * M-CLIP on XLM-R (`xlmr-clip-tiny`) and on LaBSE (`mclip-tiny`), NLLB-CLIP (`nllb-siglip-tiny`).
 * - token ids equal the `tokenizers` library's own, read independently from the same tokenizer.json and set up
 *   as the reference does: Immich's M-CLIP encoder (pad to 77 with tokenizer_config's pad_token, truncate to 77),
 *   open_clip's NLLB tokenizer (transformers' `set_src_lang_special_tokens`: template `[lang] $A </s>`);
 * - text embeddings equal transformers.js' XLMRobertaModel / BertModel outputs on the same weights, mean-pooled
 *   and projected here from the builder's weights (transformers.js has no bare NLLB encoder);
 * - preprocessing within a measured bound of transformers.js' CLIPImageProcessor (M-CLIP's CLIP image tower at
 *   240 px) and SiglipImageProcessor (NLLB-CLIP's SigLIP tower at 384 px) on the shared photos;
 * - the language option, its validation and detection; a real library searches with each text tower.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { Tokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import type { Library } from '../src/library/library.js';
import { ClipModel } from '../src/model/clip-model.js';
import { preprocessBatch } from '../src/model/image-preprocess.js';
import { FLORES200_CODES, floresCodeFor } from '../src/model/language-codes.js';
import { detectLanguage } from '../src/model/language-detect.js';
import { OPENAI_MEAN, OPENAI_STD } from '../src/model/manifest.js';
import { readModelDir } from '../src/model/model-dir.js';
import type { MultilingualPresetName } from '../src/model/multilingual-architecture.js';
import { multilingualBuiltWeights } from '../src/model/multilingual-model-builder.js';
import { hfEncoderGraph } from '../src/model/multilingual-onnx-graph.js';
import type { NllbTokenizer } from '../src/model/nllb-tokenizer.js';
import { cleanForModel } from '../src/model/text-clean.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { AdapterService } from '../src/train/adapter-service.js';
import { folderLabelRows, importLabels } from '../src/train/label-import.js';
import { openLibrary } from './helpers/ingest-library.js';
import { indexFiles } from './helpers/library-fixture.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const photos = sharedPath('photos');
const tmp = mkdtempSync(join(tmpdir(), 'clipdex-multilingual-'));
const CONTEXT = 77;
const SEED = 5;
const PRESETS = ['xlmr-clip-tiny', 'mclip-tiny', 'nllb-siglip-tiny'] as const satisfies readonly MultilingualPresetName[];
const dirs = {} as Record<MultilingualPresetName, string>;

beforeAll(async () => {
  for (const preset of PRESETS) dirs[preset] = (await buildTinyModel({ out: join(tmp, preset), preset, seed: SEED })).dir;
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SENTENCES = [
  'a photo of a dog',
  'Café crème brûlée à Paris, été 2023!',
  'Straße über schöne Berge — niño en la playa',
  '海の写真と猫',
  'قطة على الشاطئ',
  'कुत्ता और बिल्ली',
  'แมวบนชายหาด',
  'Привет, кошка на пляже',
  '🐶🐱 pets 🐾 👨‍👩‍👧 👍🏽',
  'ＦＵＬＬＷＩＤＴＨ　ﬁsh ① tab\tand\nnewline   spaces',
  'e\u0301 combining vs é composed',
  'a very long caption of a dog on the beach at sunset '.repeat(12),
  'x'.repeat(300),
  '',
  '   ',
];
const LONG = SENTENCES.length - 4;
const EMPTY = SENTENCES.length - 2;

function padIdOf(tokenizer: Tokenizer, dir: string): { padId: number; padToken: string } {
  const padToken = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')).pad_token as string;
  return { padId: tokenizer.tokenToId(padToken)!, padToken };
}

/** Immich's MClipTextualEncoder: the file as is, padded to the context with pad_token and truncated to it. */
async function mclipReference(dir: string, texts: string[]): Promise<{ ids: number[]; mask: number[] }[]> {
  const tokenizer = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
  tokenizer.setPadding({ maxLength: CONTEXT, ...padIdOf(tokenizer, dir) });
  tokenizer.setTruncation(CONTEXT);
  const out = [];
  for (const text of texts) {
    const e = await tokenizer.encode(text);
    out.push({ ids: e.getIds(), mask: e.getAttentionMask() });
  }
  return out;
}

/**
 * open_clip's NLLB tokenizer: transformers' set_src_lang_special_tokens(lang) replaces the post-processor with
 * `[lang] $A </s>`; padding='max_length', truncation=True at the context; the text cleaned by open_clip's
 * default `whitespace` clean first.
 */
async function nllbReference(dir: string, texts: string[], lang: string): Promise<number[][]> {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const langId = (json.added_tokens as { id: number; content: string }[]).find((t) => t.content === lang)!.id;
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: lang, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
    pair: [{ SpecialToken: { id: lang, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
    special_tokens: { [lang]: { id: lang, ids: [langId], tokens: [lang] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
  };
  const tokenizer = Tokenizer.fromString(JSON.stringify(json));
  tokenizer.setPadding({ maxLength: CONTEXT, ...padIdOf(tokenizer, dir) });
  tokenizer.setTruncation(CONTEXT);
  const out = [];
  for (const text of texts) out.push((await tokenizer.encode(cleanForModel(text, 'whitespace'))).getIds());
  return out;
}

async function modelTokenizer(preset: MultilingualPresetName) {
  return loadTextTokenizer(await readModelDir(dirs[preset]));
}

describe('tokenizers: clipdex ids equal the tokenizers library on a multilingual list', () => {
  const ends: Record<string, { first: string; last: string }> = {
    'xlmr-clip-tiny': { first: '<s>', last: '</s>' },
    'mclip-tiny': { first: '[CLS]', last: '[SEP]' },
  };
  for (const preset of ['xlmr-clip-tiny', 'mclip-tiny'] as const) {
    it(`${preset}: ids and attention masks of every sentence, padded to 77 and truncated with the end token kept`, async () => {
      const dir = join(dirs[preset], 'textual');
      const ours = await modelTokenizer(preset);
      const got = await ours.tokenize(SENTENCES, CONTEXT);
      const want = await mclipReference(dir, SENTENCES);
      SENTENCES.forEach((s, i) => {
        expect(got[i]!.ids, JSON.stringify(s)).toEqual(want[i]!.ids);
        expect(got[i]!.mask, JSON.stringify(s)).toEqual(want[i]!.mask);
      });
      const reference = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
      const [first, last] = [reference.tokenToId(ends[preset]!.first)!, reference.tokenToId(ends[preset]!.last)!];
      expect(ours.padId).toBe(padIdOf(reference, dir).padId);
      for (const row of got) expect(row.ids).toHaveLength(CONTEXT);
      expect(got[LONG]!.mask.every((m) => m === 1)).toBe(true);
      expect([got[LONG]!.ids[0], got[LONG]!.ids[CONTEXT - 1]]).toEqual([first, last]);
      expect(got[EMPTY]!.ids.slice(0, 3)).toEqual([first, last, ours.padId]);
      expect(new Set(got.slice(0, 11).map((r) => r.ids.join(','))).size).toBe(11);
    });
  }

  it('xlmr-clip-tiny: XLM-R ids (<s> 0, <pad> 1, </s> 2, <unk> 3), unknown characters to <unk>, full-width folded', async () => {
    const ours = await modelTokenizer('xlmr-clip-tiny');
    const [dog, wide, emoji] = await ours.tokenize(['dog', 'ｄｏｇ', '🐶 dog'], CONTEXT);
    expect(dog!.ids.slice(0, 4)).toEqual([0, dog!.ids[1], 2, 1]);
    expect(wide!.ids).toEqual(dog!.ids);
    expect(emoji!.ids).toContain(3);
  });

  for (const lang of ['eng_Latn', 'zho_Hant', 'deu_Latn']) {
    it(`nllb-siglip-tiny: rows [${lang}] text </s> <pad>… equal transformers' set_src_lang_special_tokens('${lang}') rows`, async () => {
      const dir = join(dirs['nllb-siglip-tiny'], 'textual');
      const ours = (await modelTokenizer('nllb-siglip-tiny')) as NllbTokenizer;
      const got = await ours.tokenize(SENTENCES, CONTEXT, { language: lang });
      const want = await nllbReference(dir, SENTENCES, lang);
      SENTENCES.forEach((s, i) => expect(got[i]!.ids, JSON.stringify(s)).toEqual(want[i]));
      const langId = Tokenizer.fromFile(join(dir, 'tokenizer.json')).tokenToId(lang)!;
      expect(langId).toBeGreaterThan(3);
      expect([got[LONG]!.ids[0], got[LONG]!.ids[CONTEXT - 1]]).toEqual([langId, 2]);
      expect(got[EMPTY]!.ids.slice(0, 3)).toEqual([langId, 2, 1]);
      expect(got[EMPTY]!.mask.slice(0, 3)).toEqual([1, 1, 0]);
      // The file's own template (eng_Latn first) is not what the row is built from.
      if (lang !== 'eng_Latn') expect(got.every((r) => !r.ids.includes(Tokenizer.fromFile(join(dir, 'tokenizer.json')).tokenToId('eng_Latn')!))).toBe(true);
    });
  }
});

/** Short photo phrases, three per language, with the ISO 639-1 code expected: the detector's test list. */
const DETECTION: [string, string][] = [
  ['en', 'a dog playing on the beach'], ['en', 'sunset over the mountains'], ['en', 'my grandmother birthday cake'],
  ['de', 'ein Hund spielt am Strand'], ['de', 'Sonnenuntergang über den Bergen'], ['de', 'Geburtstagskuchen meiner Großmutter'],
  ['fr', 'un chien qui joue sur la plage'], ['fr', 'coucher de soleil sur les montagnes'], ['fr', 'le gâteau d’anniversaire de ma grand-mère'],
  ['es', 'un perro jugando en la playa'], ['es', 'puesta de sol sobre las montañas'], ['es', 'el pastel de cumpleaños de mi abuela'],
  ['it', 'un cane che gioca sulla spiaggia'], ['it', 'tramonto sulle montagne'], ['it', 'la torta di compleanno della nonna'],
  ['pt', 'um cachorro brincando na praia'], ['pt', 'pôr do sol sobre as montanhas'], ['pt', 'o bolo de aniversário da minha avó'],
  ['nl', 'een hond die op het strand speelt'], ['nl', 'zonsondergang boven de bergen'], ['nl', 'de verjaardagstaart van mijn oma'],
  ['pl', 'pies bawiący się na plaży'], ['pl', 'zachód słońca nad górami'], ['pl', 'tort urodzinowy mojej babci'],
  ['sv', 'en hund som leker på stranden'], ['sv', 'solnedgång över bergen'], ['sv', 'min mormors födelsedagstårta'],
  ['tr', 'sahilde oynayan bir köpek'], ['tr', 'dağların üzerinde gün batımı'], ['tr', 'büyükannemin doğum günü pastası'],
  ['ru', 'собака играет на пляже'], ['ru', 'закат над горами'], ['ru', 'торт на день рождения бабушки'],
  ['uk', 'собака грається на пляжі'], ['uk', 'захід сонця над горами'], ['uk', 'торт на день народження бабусі'],
  ['ar', 'كلب يلعب على الشاطئ'], ['ar', 'غروب الشمس فوق الجبال'], ['ar', 'كعكة عيد ميلاد جدتي'],
  ['hi', 'समुद्र तट पर खेलता हुआ कुत्ता'], ['hi', 'पहाड़ों पर सूर्यास्त'], ['hi', 'मेरी दादी का जन्मदिन केक'],
  ['zh', '在海滩上玩耍的狗'], ['zh', '山上的日落'], ['zh', '奶奶的生日蛋糕'],
  ['ja', 'ビーチで遊ぶ犬'], ['ja', '山に沈む夕日'], ['ja', 'おばあちゃんの誕生日ケーキ'],
  ['ko', '해변에서 노는 개'], ['ko', '산 위의 일몰'], ['ko', '할머니의 생일 케이크'],
  ['th', 'สุนัขเล่นบนชายหาด'], ['th', 'พระอาทิตย์ตกเหนือภูเขา'], ['th', 'เค้กวันเกิดของคุณยาย'],
  ['el', 'ένας σκύλος παίζει στην παραλία'], ['el', 'ηλιοβασίλεμα πάνω από τα βουνά'], ['el', 'η τούρτα γενεθλίων της γιαγιάς μου'],
  ['vi', 'con chó chơi trên bãi biển'], ['vi', 'hoàng hôn trên núi'], ['vi', 'bánh sinh nhật của bà tôi'],
  ['cs', 'pes si hraje na pláži'], ['cs', 'západ slunce nad horami'], ['cs', 'narozeninový dort mé babičky'],
  ['fi', 'koira leikkii rannalla'], ['fi', 'auringonlasku vuorten yllä'], ['fi', 'isoäidin syntymäpäiväkakku'],
  ['he', 'כלב משחק על החוף'], ['he', 'שקיעה מעל ההרים'], ['he', 'עוגת יום ההולדת של סבתא'],
  ['id', 'anjing bermain di pantai'], ['id', 'matahari terbenam di atas gunung'], ['id', 'kue ulang tahun nenek saya'],
];

describe('language codes for NLLB-CLIP: an option, a UI language, or detected', () => {
  let model: ClipModel;
  beforeAll(async () => {
    model = await ClipModel.load(await readModelDir(dirs['nllb-siglip-tiny']), { providers: ['cpu'], threads: 1 });
  }, 60_000);
  afterAll(async () => model?.release());

  it('knows the 202 FLORES-200 codes its tokenizer has; a German phrase is detected as deu_Latn and encoded after that token', async () => {
    expect(model.languageCodes).toEqual([...FLORES200_CODES]);
    expect(await model.textLanguages(['ein Hund spielt am Strand', 'a dog playing on the beach', '在海滩上玩耍的狗'])).toEqual([
      'deu_Latn',
      'eng_Latn',
      'zho_Hans',
    ]);
    const tokenizer = model.tokenizer as NllbTokenizer;
    const [row] = await tokenizer.tokenize(['ein Hund spielt am Strand'], CONTEXT);
    expect(row!.ids[0]).toBe(tokenizer.inner.tokenId('deu_Latn'));
    // Detection and the same code given explicitly encode alike; another language does not.
    const [detected] = await model.embedTexts(['ein Hund spielt am Strand']);
    const [german] = await model.embedTexts(['ein Hund spielt am Strand'], { language: 'deu_Latn' });
    const [english] = await model.embedTexts(['ein Hund spielt am Strand'], { language: 'eng_Latn' });
    expect(maxAbsDiff(detected!, german!)).toBe(0);
    expect(maxAbsDiff(german!, english!)).toBeGreaterThan(1e-3);
  });

  it('takes UI language tags as Immich maps them (with its two codes NLLB lacks corrected)', async () => {
    const codes = await Promise.all(['de', 'de-DE', 'pt-BR', 'zh-TW', 'zh-Hans', 'nb-NO', 'ja', 'lv', 'deu_Latn'].map((l) => model.textLanguages(['x'], { language: l })));
    expect(codes.map((c) => c[0])).toEqual(['deu_Latn', 'deu_Latn', 'por_Latn', 'zho_Hant', 'zho_Hans', 'nob_Latn', 'jpn_Jpan', 'lvs_Latn', 'deu_Latn']);
    expect(floresCodeFor('klingon')).toBeNull();
  });

  it('refuses an unknown language with a clear error that says what a code looks like and suggests near ones', async () => {
    for (const bad of ['deu_Latm', 'xx', 'klingon', 'jpn_Hira', '']) {
      const error = await model.embedTexts(['a dog'], { language: bad }).catch((e: unknown) => e);
      expect(error, bad).toBeInstanceOf(ClipdexError);
      expect((error as ClipdexError).code).toBe('INVALID_ARGUMENT');
      expect((error as ClipdexError).message).toMatch(/FLORES-200 codes.*deu_Latn.*language tag/);
    }
    const near = await model.embedTexts(['a dog'], { language: 'deu_Latm' }).catch((e: ClipdexError) => e.message);
    expect(near).toMatch(/close to what you gave: deu_Latn/);
    const japanese = await model.embedTexts(['a dog'], { language: 'jpn_Hira' }).catch((e: ClipdexError) => e.message);
    expect(japanese).toMatch(/close to what you gave: jpn_Jpan/);
  });

  it('models without language codes ignore the option', async () => {
    const mclip = await ClipModel.load(await readModelDir(dirs['xlmr-clip-tiny']), { providers: ['cpu'], threads: 1 });
    try {
      expect(mclip.languageCodes).toBeNull();
      const [a] = await mclip.embedTexts(['ein Hund']);
      const [b] = await mclip.embedTexts(['ein Hund'], { language: 'not a language' });
      expect(maxAbsDiff(a!, b!)).toBe(0);
      expect(await mclip.textLanguages(['ein Hund'])).toEqual([null]);
    } finally {
      await mclip.release();
    }
  });

  it('the detector: at least 90% of the 72 phrases land on their FLORES-200 code (measured 67/72)', async () => {
    let right = 0;
    const wrong: string[] = [];
    for (const [iso, text] of DETECTION) {
      const detected = await detectLanguage(text);
      if (detected.flores === floresCodeFor(iso)) right++;
      else wrong.push(`${iso}→${detected.iso}`);
    }
    console.log(`language detection: ${right}/${DETECTION.length} right; wrong: ${wrong.join(' ')}`);
    expect(right / DETECTION.length).toBeGreaterThanOrEqual(0.9);
  }, 60_000);
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function unit(v: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / norm);
}
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);

describe('transformers.js as the oracle', () => {
  const options = { local_files_only: true } as const;
  const sessions = { ...options, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } } as const;
  beforeAll(() => {
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = `${tmp}/`;
  });

  /** The bare encoder of a preset as transformers.js loads it, beside the model's own tokenizer files. */
  function writeEncoderFolder(preset: 'xlmr-clip-tiny' | 'mclip-tiny'): string {
    const weights = multilingualBuiltWeights(preset, SEED);
    const t = weights.arch.text;
    const name = `${preset}-encoder`;
    const dir = join(tmp, name);
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    writeFileSync(join(dir, 'onnx', 'model.onnx'), hfEncoderGraph(weights));
    const xlmr = t.kind === 'xlm-roberta';
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        model_type: xlmr ? 'xlm-roberta' : 'bert',
        architectures: [xlmr ? 'XLMRobertaModel' : 'BertModel'],
        hidden_size: t.width,
        num_hidden_layers: t.layers,
        num_attention_heads: t.heads,
        intermediate_size: 4 * t.width,
        vocab_size: t.vocabSize,
        max_position_embeddings: t.positionRows,
        pad_token_id: t.padId,
        type_vocab_size: 2,
        layer_norm_eps: t.layerNormEps,
        hidden_act: 'gelu',
      }),
    );
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      writeFileSync(join(dir, f), readFileSync(join(dirs[preset], 'textual', f)));
    }
    return name;
  }

  for (const preset of ['xlmr-clip-tiny', 'mclip-tiny'] as const) {
    const className = preset === 'xlmr-clip-tiny' ? 'XLMRobertaModel' : 'BertModel';
    it(`${preset}: embeddings equal ${className}'s last_hidden_state mean-pooled over the mask and projected here (max |Δ| ≤ 1e-5)`, async () => {
      const name = writeEncoderFolder(preset);
      const ModelClass = preset === 'xlmr-clip-tiny' ? tf.XLMRobertaModel : tf.BertModel;
      const encoder = await ModelClass.from_pretrained(name, sessions);
      const model = await ClipModel.load(await readModelDir(dirs[preset]), { providers: ['cpu'], threads: 1 });
      const weights = multilingualBuiltWeights(preset, SEED);
      const { w, b, inDim, outDim } = weights.text.projection;
      try {
        const texts = SENTENCES.slice(0, 11);
        const ours = await model.embedTexts(texts);
        const rows = await mclipReference(join(dirs[preset], 'textual'), texts);
        const n = texts.length;
        const feeds: Record<string, tf.Tensor> = {
          input_ids: new tf.Tensor('int64', BigInt64Array.from(rows.flatMap((r) => r.ids), BigInt), [n, CONTEXT]),
          attention_mask: new tf.Tensor('int64', BigInt64Array.from(rows.flatMap((r) => r.mask), BigInt), [n, CONTEXT]),
        };
        if (preset === 'mclip-tiny') feeds.token_type_ids = new tf.Tensor('int64', new BigInt64Array(n * CONTEXT), [n, CONTEXT]);
        const { last_hidden_state } = await encoder(feeds);
        const hidden = last_hidden_state.data as Float32Array;
        texts.forEach((text, r) => {
          const mask = rows[r]!.mask;
          const real = mask.reduce((s, m) => s + m, 0);
          const pooled = new Float64Array(inDim);
          for (let i = 0; i < CONTEXT; i++) {
            if (mask[i] === 0) continue;
            for (let d = 0; d < inDim; d++) pooled[d]! += hidden[(r * CONTEXT + i) * inDim + d]! / real;
          }
          const projected = Array.from({ length: outDim }, (_, o) => {
            let s = b[o]!;
            for (let d = 0; d < inDim; d++) s += pooled[d]! * w[d * outDim + o]!;
            return s;
          });
          expect(maxAbsDiff(ours[r]!, unit(projected)), JSON.stringify(text)).toBeLessThanOrEqual(1e-5);
        });
        // The mask matters: pooling every position (pads included) lands elsewhere.
        const all = Array.from({ length: inDim }, (_, d) => {
          let s = 0;
          for (let i = 0; i < CONTEXT; i++) s += hidden[i * inDim + d]! / CONTEXT;
          return s;
        });
        const allProjected = Array.from({ length: outDim }, (_, o) => b[o]! + all.reduce((s, x, d) => s + x * w[d * outDim + o]!, 0));
        expect(maxAbsDiff(ours[0]!, unit(allProjected))).toBeGreaterThan(1e-3);
      } finally {
        await Promise.all([model.release(), encoder.dispose()]);
      }
    }, 60_000);
  }

  describe.skipIf(!photos)(`photos ${photos ? '' : NEEDS_SHARED}`, () => {
    /**
     * Measured (sharp 0.35, transformers.js 4.3), mean |Δ| of the normalised pixels against
     * the family's transformers.js processor fed the same file: CLIPImageProcessor at 240 px (shortest side, centre
     * crop, OpenAI mean/std; range ≈ 3.8) for M-CLIP's image tower, SiglipImageProcessor at 384 px (squash,
     * mean/std 0.5; range 2.0) for NLLB-CLIP's. transformers.js resizes with sharp's point-sampling bicubic,
     * clipdex with libvips' antialiased reduce (PIL's behaviour), so the gap grows with the downscale.
     * Bounds: twice the measured value.
     */
    const MEASURED: Record<string, { clip240: number; siglip384: number }> = {
      'skimage/astronaut.png': { clip240: 0.0722, siglip384: 0.0144 },
      'skimage/rocket.jpg': { clip240: 0.0691, siglip384: 0.0158 },
      'edge/Dune.jpg': { clip240: 0.124, siglip384: 0.0494 },
      'edge/logo.png': { clip240: 0.0261, siglip384: 0.0045 },
      'labeled/fishes/fish1.webp': { clip240: 0.176, siglip384: 0.0794 },
      'labeled/tools/hammer1.webp': { clip240: 0.0157, siglip384: 0.0092 },
    };
    const FILES = Object.keys(MEASURED);

    function writeProcessor(name: string, config: Record<string, unknown>): string {
      mkdirSync(join(tmp, name), { recursive: true });
      writeFileSync(join(tmp, name, 'preprocessor_config.json'), JSON.stringify(config));
      return name;
    }

    for (const [preset, key] of [
      ['xlmr-clip-tiny', 'clip240'],
      ['nllb-siglip-tiny', 'siglip384'],
    ] as const) {
      it(`${preset}: preprocessing within the measured bound of transformers.js' ${key === 'clip240' ? 'CLIPImageProcessor' : 'SiglipImageProcessor'}`, async () => {
        const spec = await readModelDir(dirs[preset]);
        const size = spec.preprocess.size;
        expect(size).toBe(key === 'clip240' ? 240 : 384);
        const name =
          key === 'clip240'
            ? writeProcessor(`${preset}-processor`, {
                image_processor_type: 'CLIPImageProcessor',
                do_resize: true,
                size: { shortest_edge: size },
                resample: 3,
                do_center_crop: true,
                crop_size: { height: size, width: size },
                do_rescale: true,
                rescale_factor: 1 / 255,
                do_normalize: true,
                image_mean: [...OPENAI_MEAN],
                image_std: [...OPENAI_STD],
                do_convert_rgb: true,
              })
            : writeProcessor(`${preset}-processor`, {
                image_processor_type: 'SiglipImageProcessor',
                do_resize: true,
                size: { height: size, width: size },
                resample: 3,
                do_rescale: true,
                rescale_factor: 1 / 255,
                do_normalize: true,
                image_mean: [0.5, 0.5, 0.5],
                image_std: [0.5, 0.5, 0.5],
              });
        const processor = await tf.AutoImageProcessor.from_pretrained(name, options);
        const paths = FILES.map((f) => join(photos!, f));
        const ours = await preprocessBatch(paths, spec.preprocess, { concurrency: 1 });
        const plane = 3 * size * size;
        const measured: Record<string, number> = {};
        for (let i = 0; i < paths.length; i++) {
          const { pixel_values } = await processor(await tf.RawImage.read(paths[i]!));
          expect(pixel_values.dims).toEqual([1, 3, size, size]);
          const theirs = pixel_values.data as Float32Array;
          let sum = 0;
          for (let k = 0; k < plane; k++) sum += Math.abs(ours.tensor[i * plane + k]! - theirs[k]!);
          measured[FILES[i]!] = sum / plane;
        }
        console.log(`${preset} preprocessing mean |Δ|: ${JSON.stringify(measured)}`);
        for (const f of FILES) expect(measured[f], f).toBeLessThanOrEqual(2 * MEASURED[f]![key]);
      }, 120_000);
    }
  });
});

describe('build-tiny', () => {
  it('refuses the transformers.js layout for families that have none, naming the one they have', async () => {
    const error = await buildTinyModel({ out: join(tmp, 'refused'), preset: 'nllb-siglip-tiny', layout: 'hf' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ClipdexError);
    expect((error as ClipdexError).message).toMatch(/only in the Immich layout \(--layout openclip\)/);
  });

  it('reads each folder as its family, with the inputs and tokenizer the reference feeds', async () => {
    const specs = await Promise.all(PRESETS.map((p) => readModelDir(dirs[p])));
    expect(specs.map((s) => [s.family, s.layout, s.text.input, s.contextLength, s.tokenizer])).toEqual([
      ['m-clip', 'openclip', 'input_ids', 77, { kind: 'hf', cleaning: 'none' }],
      ['m-clip', 'openclip', 'input_ids', 77, { kind: 'hf', cleaning: 'none' }],
      ['nllb-clip', 'openclip', 'text', 77, { kind: 'hf', cleaning: 'whitespace', languageCodes: 'flores-200' }],
    ]);
    expect(specs.map((s) => [s.preprocess.size, s.preprocess.resizeMode])).toEqual([
      [240, 'shortest'],
      [224, 'shortest'],
      [384, 'squash'],
    ]);
    expect(specs[2]!.scoreCalibration).toEqual({ logitScale: expect.closeTo(10, 9), logitBias: -10 });
    expect(specs[0]!.scoreCalibration).toBeNull();
  });
});

describe.skipIf(!photos)(`search end to end through a real library ${photos ? '' : NEEDS_SHARED}`, () => {
  const files = ['skimage/astronaut.png', 'skimage/coffee.png', 'edge/Dune.jpg', 'labeled/fishes/fish10.webp', 'labeled/renewable/dam2.webp'].map((f) =>
    join(photos ?? '', f),
  );
  for (const preset of ['xlmr-clip-tiny', 'nllb-siglip-tiny'] as const) {
    describe(preset, () => {
      let library: Library;
      beforeAll(async () => {
        library = await openLibrary(join(tmp, `data-${preset}`), dirs[preset]);
        await indexFiles(library, photos!, files);
      }, 120_000);
      afterAll(async () => library?.close());

      it('a German query ranks the photos by the cosine of the model’s embeddings; each photo finds itself first', async () => {
        const engine = new QueryEngine(library);
        const { model, index } = library.requireModel();
        const query = 'ein Fisch im Wasser';
        const response = await engine.search({ terms: [{ text: query }] });
        expect(response.results).toHaveLength(files.length);
        const [q] = await model.embedTexts([query]);
        const images = await model.embedImages(files);
        const expected = files.map((f, i) => ({ f, s: cosine(q!, images[i]!.ok ? images[i]!.embedding : []) })).sort((a, b) => b.s - a.s);
        expect(response.results.map((r) => r.path)).toEqual(expected.map((e) => e.f));
        response.results.forEach((r, i) => expect(r.score).toBeCloseTo(expected[i]!.s, 4));
        for (const [i, file] of files.entries()) {
          const own = images[i]!;
          if (!own.ok) throw own.error;
          const hits = await index.search(own.embedding, 1);
          expect(library.images.get(hits[0]!.id)?.path, file).toBe(file);
        }
      }, 120_000);
    });
  }
});

const labeled = sharedPath('photos', 'labeled');
describe.skipIf(!labeled)(`training on NLLB-CLIP's embeddings ${labeled ? '' : NEEDS_SHARED}`, () => {
  it('trains an adapter on folder labels (captions encoded with their detected language), activates it, and searches through it', async () => {
    const library = await openLibrary(join(tmp, 'data-train'), dirs['nllb-siglip-tiny']);
    try {
      const folders = ['fishes', 'tools', 'renewable', 'others'];
      const ids: number[] = [];
      for (const folder of folders) {
        const files = readdirSync(join(labeled!, folder)).filter((f) => f.endsWith('.webp')).sort().slice(0, 6).map((f) => join(labeled!, folder, f));
        ids.push(...(await indexFiles(library, labeled!, files)));
      }
      expect(importLabels(library, folderLabelRows(library, labeled!)).problemCount).toBe(0);
      const service = new AdapterService(library);
      const { adapter, outcome } = await service.train({ seed: 3 });
      expect(outcome.trainPairs + outcome.valPairs + outcome.testPairs).toBe(24);
      expect(outcome.history.length).toBeGreaterThan(1);
      expect(Math.min(...outcome.history.map((h) => h.trainLoss))).toBeLessThan(outcome.history[0]!.trainLoss);
      const activation = await service.activate(adapter.version);
      expect(activation.projected).toBe(24);
      expect(library.searchSpace().adapter?.version).toBe(adapter.version);
      const response = await new QueryEngine(library).search({ terms: [{ text: 'a photo of fishes' }], limit: 24 });
      expect(response.results.map((r) => r.id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    } finally {
      await library.close();
    }
  }, 300_000);
});
