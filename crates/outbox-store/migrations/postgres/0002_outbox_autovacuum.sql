-- outbox: autovacuum settings for a queue table. Every event is inserted, updated twice and
-- (with retention) deleted, so dead row versions pile up fast: vacuum after 1% of the table
-- has changed instead of PostgreSQL's default 20%, without cost-based throttling, and keep
-- planner statistics fresh.
ALTER TABLE "OutboxEvent" SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
