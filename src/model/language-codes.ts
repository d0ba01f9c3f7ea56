/**
 * FLORES-200 language codes (NLLB-200's: ISO 639-3 language, underscore, ISO 15924 script, e.g. `deu_Latn`)
 * and the map from the tags a user or a detector gives (ISO 639-1 `de`, BCP 47 `pt-BR`, `zh-Hant`) to them.
 *
 * The map starts from Immich's `WEBLATE_TO_FLORES200` (machine-learning/immich_ml/models/constants.py), with
 * two of its targets corrected to codes NLLB-200 actually has (`ja` → `jpn_Jpan`, not `jpn_Hira`; `lv` →
 * `lvs_Latn`, not `lav_Latn`), and adds every language eld detects (language-detect.ts) plus a few common
 * UI languages.
 */

/** NLLB-200's 202 language codes, in its tokenizer's order (transformers' FAIRSEQ_LANGUAGE_CODES). */
export const FLORES200_CODES: readonly string[] = [
  'ace_Arab', 'ace_Latn', 'acm_Arab', 'acq_Arab', 'aeb_Arab', 'afr_Latn', 'ajp_Arab', 'aka_Latn', 'amh_Ethi', 'apc_Arab',
  'arb_Arab', 'ars_Arab', 'ary_Arab', 'arz_Arab', 'asm_Beng', 'ast_Latn', 'awa_Deva', 'ayr_Latn', 'azb_Arab', 'azj_Latn',
  'bak_Cyrl', 'bam_Latn', 'ban_Latn', 'bel_Cyrl', 'bem_Latn', 'ben_Beng', 'bho_Deva', 'bjn_Arab', 'bjn_Latn', 'bod_Tibt',
  'bos_Latn', 'bug_Latn', 'bul_Cyrl', 'cat_Latn', 'ceb_Latn', 'ces_Latn', 'cjk_Latn', 'ckb_Arab', 'crh_Latn', 'cym_Latn',
  'dan_Latn', 'deu_Latn', 'dik_Latn', 'dyu_Latn', 'dzo_Tibt', 'ell_Grek', 'eng_Latn', 'epo_Latn', 'est_Latn', 'eus_Latn',
  'ewe_Latn', 'fao_Latn', 'pes_Arab', 'fij_Latn', 'fin_Latn', 'fon_Latn', 'fra_Latn', 'fur_Latn', 'fuv_Latn', 'gla_Latn',
  'gle_Latn', 'glg_Latn', 'grn_Latn', 'guj_Gujr', 'hat_Latn', 'hau_Latn', 'heb_Hebr', 'hin_Deva', 'hne_Deva', 'hrv_Latn',
  'hun_Latn', 'hye_Armn', 'ibo_Latn', 'ilo_Latn', 'ind_Latn', 'isl_Latn', 'ita_Latn', 'jav_Latn', 'jpn_Jpan', 'kab_Latn',
  'kac_Latn', 'kam_Latn', 'kan_Knda', 'kas_Arab', 'kas_Deva', 'kat_Geor', 'knc_Arab', 'knc_Latn', 'kaz_Cyrl', 'kbp_Latn',
  'kea_Latn', 'khm_Khmr', 'kik_Latn', 'kin_Latn', 'kir_Cyrl', 'kmb_Latn', 'kon_Latn', 'kor_Hang', 'kmr_Latn', 'lao_Laoo',
  'lvs_Latn', 'lij_Latn', 'lim_Latn', 'lin_Latn', 'lit_Latn', 'lmo_Latn', 'ltg_Latn', 'ltz_Latn', 'lua_Latn', 'lug_Latn',
  'luo_Latn', 'lus_Latn', 'mag_Deva', 'mai_Deva', 'mal_Mlym', 'mar_Deva', 'min_Latn', 'mkd_Cyrl', 'plt_Latn', 'mlt_Latn',
  'mni_Beng', 'khk_Cyrl', 'mos_Latn', 'mri_Latn', 'zsm_Latn', 'mya_Mymr', 'nld_Latn', 'nno_Latn', 'nob_Latn', 'npi_Deva',
  'nso_Latn', 'nus_Latn', 'nya_Latn', 'oci_Latn', 'gaz_Latn', 'ory_Orya', 'pag_Latn', 'pan_Guru', 'pap_Latn', 'pol_Latn',
  'por_Latn', 'prs_Arab', 'pbt_Arab', 'quy_Latn', 'ron_Latn', 'run_Latn', 'rus_Cyrl', 'sag_Latn', 'san_Deva', 'sat_Beng',
  'scn_Latn', 'shn_Mymr', 'sin_Sinh', 'slk_Latn', 'slv_Latn', 'smo_Latn', 'sna_Latn', 'snd_Arab', 'som_Latn', 'sot_Latn',
  'spa_Latn', 'als_Latn', 'srd_Latn', 'srp_Cyrl', 'ssw_Latn', 'sun_Latn', 'swe_Latn', 'swh_Latn', 'szl_Latn', 'tam_Taml',
  'tat_Cyrl', 'tel_Telu', 'tgk_Cyrl', 'tgl_Latn', 'tha_Thai', 'tir_Ethi', 'taq_Latn', 'taq_Tfng', 'tpi_Latn', 'tsn_Latn',
  'tso_Latn', 'tuk_Latn', 'tum_Latn', 'tur_Latn', 'twi_Latn', 'tzm_Tfng', 'uig_Arab', 'ukr_Cyrl', 'umb_Latn', 'urd_Arab',
  'uzn_Latn', 'vec_Latn', 'vie_Latn', 'war_Latn', 'wol_Latn', 'xho_Latn', 'ydd_Hebr', 'yor_Latn', 'yue_Hant', 'zho_Hans',
  'zho_Hant', 'zul_Latn',
];

/** The FLORES-200 code NLLB-CLIP gets when neither the caller nor detection names a language (open_clip's default). */
export const DEFAULT_FLORES_CODE = 'eng_Latn';

export const FLORES_CODE_PATTERN = /^[a-z]{3}_[A-Z][a-z]{3}$/;

/**
 * Language tags → FLORES-200. Keys are lower-case; a region or script subtag is tried whole first
 * (`zh-tw`, `pt-br`), then the language alone.
 */
const TAG_TO_FLORES: Readonly<Record<string, string>> = {
  // Immich's WEBLATE_TO_FLORES200 (two targets corrected, see above).
  af: 'afr_Latn', ar: 'arb_Arab', az: 'azj_Latn', be: 'bel_Cyrl', bg: 'bul_Cyrl', ca: 'cat_Latn', cs: 'ces_Latn',
  da: 'dan_Latn', de: 'deu_Latn', el: 'ell_Grek', en: 'eng_Latn', es: 'spa_Latn', et: 'est_Latn', fa: 'pes_Arab',
  fi: 'fin_Latn', fr: 'fra_Latn', he: 'heb_Hebr', hi: 'hin_Deva', hr: 'hrv_Latn', hu: 'hun_Latn', hy: 'hye_Armn',
  id: 'ind_Latn', it: 'ita_Latn', ja: 'jpn_Jpan', kmr: 'kmr_Latn', ko: 'kor_Hang', lb: 'ltz_Latn', lt: 'lit_Latn',
  lv: 'lvs_Latn', mfa: 'zsm_Latn', mk: 'mkd_Cyrl', mn: 'khk_Cyrl', mr: 'mar_Deva', ms: 'zsm_Latn', 'nb-no': 'nob_Latn',
  nn: 'nno_Latn', nl: 'nld_Latn', pl: 'pol_Latn', 'pt-br': 'por_Latn', pt: 'por_Latn', ro: 'ron_Latn', ru: 'rus_Cyrl',
  sk: 'slk_Latn', sl: 'slv_Latn', 'sr-cyrl': 'srp_Cyrl', sv: 'swe_Latn', ta: 'tam_Taml', te: 'tel_Telu', th: 'tha_Thai',
  tr: 'tur_Latn', uk: 'ukr_Cyrl', ur: 'urd_Arab', vi: 'vie_Latn', 'zh-cn': 'zho_Hans', 'zh-hans': 'zho_Hans',
  'zh-tw': 'zho_Hant',
  // The rest of what eld detects (ISO 639-1).
  am: 'amh_Ethi', bn: 'ben_Beng', eu: 'eus_Latn', gu: 'guj_Gujr', is: 'isl_Latn', ka: 'kat_Geor', kn: 'kan_Knda',
  ku: 'kmr_Latn', lo: 'lao_Laoo', ml: 'mal_Mlym', no: 'nob_Latn', or: 'ory_Orya', pa: 'pan_Guru', sq: 'als_Latn',
  sr: 'srp_Cyrl', tl: 'tgl_Latn', yo: 'yor_Latn', zh: 'zho_Hans',
  // Other common UI languages.
  nb: 'nob_Latn', 'zh-hant': 'zho_Hant', 'zh-hk': 'zho_Hant', 'sr-latn': 'srp_Cyrl', fil: 'tgl_Latn', sw: 'swh_Latn',
  ga: 'gle_Latn', cy: 'cym_Latn', gl: 'glg_Latn', ne: 'npi_Deva', si: 'sin_Sinh', km: 'khm_Khmr', my: 'mya_Mymr',
  kk: 'kaz_Cyrl', uz: 'uzn_Latn', tg: 'tgk_Cyrl', ky: 'kir_Cyrl', ps: 'pbt_Arab', so: 'som_Latn', ha: 'hau_Latn',
  ig: 'ibo_Latn', zu: 'zul_Latn', xh: 'xho_Latn', mt: 'mlt_Latn', eo: 'epo_Latn', bs: 'bos_Latn', jv: 'jav_Latn',
  su: 'sun_Latn', tt: 'tat_Cyrl', ug: 'uig_Arab', bo: 'bod_Tibt', yue: 'yue_Hant', ckb: 'ckb_Arab', oc: 'oci_Latn',
};

/**
 * The FLORES-200 code for a language given as a FLORES-200 code itself (`deu_Latn`, returned as is) or as a
 * language tag (`de`, `de-DE`, `pt_BR`, `zh-Hant`); null when the tag names no language in the table.
 */
export function floresCodeFor(language: string): string | null {
  const trimmed = language.trim();
  if (FLORES_CODE_PATTERN.test(trimmed)) return trimmed;
  const tag = trimmed.toLowerCase().replaceAll('_', '-');
  if (tag === '') return null;
  return TAG_TO_FLORES[tag] ?? TAG_TO_FLORES[tag.split('-')[0]!] ?? null;
}
