-- clipdex schema 8: text in photos (OCR). Applied inside a transaction; no BEGIN/COMMIT.
-- Written to apply after 006 on its own: it reads and changes nothing that 007 (training splits) defines.

-- What reading a content's text came to, once per content hash (copies of a photo share it, like their
-- embedding): 'done' with its lines (none is a result too: a photo without text), or 'failed' with the
-- error's code and message (the photo is indexed for CLIP all the same). A photo whose content has no row
-- here has not been read yet: the background pass reads it, unless the library's OCR is off.
-- stopped: why reading ended early ('boxes': more lines than the cap; 'time': the per-photo time bound).
CREATE TABLE ocr_state (
  id            INTEGER PRIMARY KEY,
  content_hash  TEXT NOT NULL UNIQUE,
  status        TEXT NOT NULL CHECK (status IN ('done', 'failed')),
  engine        TEXT NOT NULL,
  line_count    INTEGER NOT NULL DEFAULT 0,
  stopped       TEXT CHECK (stopped IN ('boxes', 'time')),
  error_code    TEXT,
  error_message TEXT,
  read_ms       REAL,
  updated_at    INTEGER NOT NULL,
  CHECK ((status = 'failed') = (error_code IS NOT NULL))
) STRICT;
CREATE INDEX ocr_state_status ON ocr_state (status);

-- The lines read, in reading order. box: the four corners tl, tr, br, bl as [[x, y], …], as fractions (0–1)
-- of the upright photo's width and height, so any rendering of the photo can draw them.
CREATE TABLE ocr_lines (
  state_id   INTEGER NOT NULL REFERENCES ocr_state (id) ON DELETE CASCADE,
  line       INTEGER NOT NULL,
  text       TEXT NOT NULL,
  confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
  box        TEXT NOT NULL CHECK (json_valid(box)),
  PRIMARY KEY (state_id, line)
) STRICT, WITHOUT ROWID;

-- Full-text search over a content's lines (joined by spaces: a phrase may run over two boxes), rowid = ocr_state.id. The trigram tokenizer:
-- the recogniser drops spaces between words ('basedsegmentation'), people type parts of words, and CJK has
-- no spaces at all; unicode61 finds none of those (measured in test/ocr-store.test.ts). remove_diacritics:
-- 'cafe' finds 'café', and the recogniser's dictionary has no 'ü' or 'ñ' to begin with.
CREATE VIRTUAL TABLE ocr_fts USING fts5 (text, tokenize = 'trigram remove_diacritics 1');

CREATE TRIGGER ocr_state_delete AFTER DELETE ON ocr_state
BEGIN
  DELETE FROM ocr_fts WHERE rowid = OLD.id;
END;

-- Garbage collection (OrphansRepo.collectGarbage) drops a content nothing points at any more by deleting its
-- orphan mark: its text goes with it. An orphan mark deleted because a photo has that content again is not that.
CREATE TRIGGER ocr_collect_garbage AFTER DELETE ON orphaned_content
WHEN NOT EXISTS (SELECT 1 FROM images WHERE content_hash = OLD.content_hash)
BEGIN
  DELETE FROM ocr_state WHERE content_hash = OLD.content_hash;
END;
