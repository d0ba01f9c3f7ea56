-- clipdex schema 4, PostgreSQL dialect. Mirrors migrations/004_root_pin.sql (each root's pinned real path and
-- "dev:ino"; see it for why). Applied inside a transaction; no BEGIN/COMMIT. No dialect difference beyond TEXT -> text.

ALTER TABLE roots ADD COLUMN pinned_real_path text COLLATE "C";
ALTER TABLE roots ADD COLUMN pinned_identity text;
