-- clipdex schema 8 (SQLite): nothing. Postgres's step 8 gives its embeddings a pgvector column for search
-- inside the database; the embedded backend searches its own HNSW files and keeps the BLOB only. The step
-- exists so that both backends count their schema versions alike (migrations/postgres/ mirrors this folder).
SELECT 1;
