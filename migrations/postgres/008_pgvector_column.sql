-- clipdex schema 8 (Postgres): the vectors in pgvector's own type, beside the bytea that stays the source of
-- truth byte for byte (the SQLite twin keeps only the BLOB). Applied inside a transaction; no BEGIN/COMMIT.
--
-- Dimensionless on purpose: one table holds every model key's vectors (512-d CLIP beside 768-d or 1152-d
-- ones), and each key's HNSW index is a partial expression index over `embedding::halfvec(<dim>)` that the
-- index code (src/store/pg/pg-vector-repo.ts) creates when it opens the key, with that key's dimension.
-- EmbeddingsRepo writes the column with the bytea; rows written before this step (NULL here) are filled
-- from their bytea by the index code when it opens their key: SQL cannot read little-endian float32 out of
-- a bytea at any useful speed, the client can.
ALTER TABLE embeddings ADD COLUMN embedding vector;
