-- clipdex schema 9 (Postgres), the twin of migrations/009_queue_leases.sql: leases on the work queue, so many
-- workers and servers take files from one queue (FOR UPDATE SKIP LOCKED) and a killed worker's files return
-- to it when its lease (ms since the epoch, by the database's clock) runs out.
ALTER TABLE ingest_queue ADD COLUMN claimed_by text;
ALTER TABLE ingest_queue ADD COLUMN lease_until bigint;
-- A worker's heartbeat and give-back find its own claims without a walk of the queue.
CREATE INDEX ingest_queue_claimed_by ON ingest_queue (claimed_by) WHERE claimed_by IS NOT NULL;
