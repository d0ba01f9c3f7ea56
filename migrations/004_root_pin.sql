-- clipdex schema 4: each root's pinned identity. Applied inside a transaction; no BEGIN/COMMIT.

-- The folder the user chose, as it was when added (or, for roots added before this schema, when its path
-- first resolved): its real path with every symlink resolved, and its "dev:ino" (text: inode numbers can
-- exceed 2^53). Unlike `identity`, which follows every scan, these change only when the user confirms a
-- new folder: a root whose symlink now points elsewhere goes offline instead of serving or indexing the
-- new target's files under the old photos' names.
ALTER TABLE roots ADD COLUMN pinned_real_path TEXT;
ALTER TABLE roots ADD COLUMN pinned_identity TEXT;
