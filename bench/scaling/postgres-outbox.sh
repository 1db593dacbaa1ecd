#!/usr/bin/env bash
# Measures, on this machine, the Postgres costs that docs/scaling.md quotes:
#   1. what the outbox INSERT (+ pg_notify) adds to a producer transaction
#      (pgbench: a domain-only transaction vs. the same plus one outbox row);
#   2. pruning a 10 M-row outbox: the publisher's DELETE windows
#      (pruneWindow: the primary key walked in windows of rows, no index on
#      published_at since migration 0004) vs. a table partitioned by day on
#      created_at, where a day goes with DETACH PARTITION + DROP TABLE.
# It works in a scratch database that it drops on exit, and stays bounded
# (10 M rows of ~250 bytes; a few minutes of CPU; ~7 GB of disk while it runs).
# Usage: bench/scaling/postgres-outbox.sh [rows, default 10000000]
# Env: PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
ROWS=${1:-10000000}
DAYS=14                     # rows spread over 14 days of created_at/published_at
DB="petcover_scaling_$$"
WORK=$(mktemp -d)
cleanup() { psql -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
q() { psql -X -q -At -d "$DB" -v ON_ERROR_STOP=1 "$@"; }
ms() { date +%s%3N; }
say() { printf '%s\n' "$*"; }

psql -q -d postgres -c "CREATE DATABASE \"$DB\""
for f in packages/outbox/drizzle/*.sql; do q -f "$f" >/dev/null; done
q -c "SELECT 'postgres ' || current_setting('server_version') || ', shared_buffers ' || current_setting('shared_buffers') || ', synchronous_commit ' || current_setting('synchronous_commit') || ', cores ' || '$(nproc)' || ', load ' || '$(cut -d' ' -f1 /proc/loadavg)'"

# ---- 1. insert cost per producer transaction --------------------------------
q -c "CREATE TABLE public.pet (id bigserial PRIMARY KEY, owner uuid NOT NULL, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
PAYLOAD='{"contractId":"8f7b0c3e-3f7a-4a55-9d1e-2b1c1f0a9e11","petId":"a1c2e3f4-0000-4000-8000-000000000001","planCode":"ESSENTIAL","monthlyPremiumCents":2900,"startsOn":"2026-12-01"}'
HEADERS='{"correlationId":"c0ffee00-0000-4000-8000-000000000000","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'
cat > "$WORK/domain.sql" <<SQL
BEGIN;
INSERT INTO public.pet (owner, name) VALUES (gen_random_uuid(), 'Rex');
COMMIT;
SQL
cat > "$WORK/domain-outbox.sql" <<SQL
BEGIN;
INSERT INTO public.pet (owner, name) VALUES (gen_random_uuid(), 'Rex');
INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, headers)
  VALUES (gen_random_uuid(), 'stream:contracting:contract_changes', gen_random_uuid()::text, 'ContractCreated', '$PAYLOAD', '$HEADERS')
  RETURNING id, pg_notify('petcover_outbox', stream_name);
COMMIT;
SQL
# The same without pg_notify: NOTIFY serialises committing transactions on one
# database-wide lock, which is what this pair isolates.
sed "s/RETURNING id, pg_notify('petcover_outbox', stream_name)/RETURNING id/" "$WORK/domain-outbox.sql" > "$WORK/domain-outbox-no-notify.sql"
for clients in 1 8; do
  for script in domain domain-outbox-no-notify domain-outbox; do
    out=$(pgbench -n -d "$DB" -f "$WORK/$script.sql" -c "$clients" -j "$clients" -T 15 2>&1)
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    say "insert  clients=$clients  $script  tps=$tps  latency_avg_ms=$lat"
  done
done
q -c "TRUNCATE public.pet, events.outbox_event"

# ---- 2. prune at $ROWS rows -------------------------------------------------
# All rows published, created over the last $DAYS days; retention 7 days, so
# about half the table is due for pruning. Indexes are dropped for the fill and
# rebuilt after it (only to make the fill quick; what is measured runs with
# every index of the migration in place).
INDEXES=$(q -c "SELECT string_agg(pg_get_indexdef(indexrelid) || ';', E'\n') FROM pg_index WHERE indrelid = 'events.outbox_event'::regclass AND NOT indisprimary")
q -c "SELECT 'DROP INDEX events.' || quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'events.outbox_event'::regclass AND NOT i.indisprimary" | sed 's/$/;/' | q >/dev/null
t0=$(ms)
q -c "INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, headers, created_at, published_at)
      SELECT gen_random_uuid(), 'stream:contracting:contract_changes', 'c' || (g % 100000), 'ContractCreated', '$PAYLOAD'::jsonb, '{}'::jsonb, ts, ts + interval '20 ms'
      FROM generate_series(1, $ROWS) g, LATERAL (SELECT now() - interval '$DAYS days' + (g::float8 / $ROWS) * interval '$DAYS days' AS ts) t"
q -c "$INDEXES"
q -c "VACUUM ANALYZE events.outbox_event"
say "fill  rows=$ROWS  ms=$(( $(ms) - t0 ))  table_size=$(q -c "SELECT pg_size_pretty(pg_total_relation_size('events.outbox_event'))")"

# The same rows in a table partitioned by day on created_at.
q <<SQL
CREATE TABLE events.outbox_event_by_day (LIKE events.outbox_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (created_at);
DO \$\$
DECLARE d date := (now() - interval '$((DAYS + 1)) days')::date;
BEGIN
  WHILE d <= (now() + interval '1 day')::date LOOP
    EXECUTE format('CREATE TABLE events.outbox_event_%s PARTITION OF events.outbox_event_by_day FOR VALUES FROM (%L) TO (%L)',
                   to_char(d, 'YYYYMMDD'), d, d + 1);
    d := d + 1;
  END LOOP;
END \$\$;
SQL
t=$(ms)
q -c "INSERT INTO events.outbox_event_by_day SELECT * FROM events.outbox_event"
# A unique index on a partitioned table must include the partition key: event_id
# is unique per day, no longer globally (see docs/scaling.md).
q -c "ALTER TABLE events.outbox_event_by_day ADD PRIMARY KEY (id, created_at)"
q -c "CREATE UNIQUE INDEX ON events.outbox_event_by_day (event_id, created_at)"
q -c "CREATE INDEX ON events.outbox_event_by_day (stream_name, id) WHERE published_at IS NULL"
q -c "VACUUM ANALYZE events.outbox_event_by_day"
say "fill partitioned  rows=$(q -c "SELECT count(*) FROM events.outbox_event_by_day")  partitions=$(q -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events.outbox_event_by_day'::regclass")  ms=$(( $(ms) - t ))"

# The publisher's prune pass (prunePublishedRows in maintenance.ts, one
# pruneWindow statement from statements.ts per window, one transaction each),
# from the bottom of the table as a full sweep does, for at most `windows`
# windows; timed on the database clock inside one session.
q <<'SQL'
CREATE PROCEDURE public.prune_windows(size int, windows int) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); lsn0 pg_lsn := pg_current_wal_lsn(); n bigint := 0; w int := 0;
        from_id bigint := -9223372036854775808; examined int; deleted int; last_id bigint; reached_recent boolean;
BEGIN
  LOOP
    WITH cutoff AS (SELECT now() - make_interval(secs => 604800) AS at),
    win AS MATERIALIZED (
      SELECT id, created_at, published_at FROM events.outbox_event
      WHERE id >= from_id ORDER BY id LIMIT size),
    gone AS (
      DELETE FROM events.outbox_event o USING win, cutoff
      WHERE o.id = win.id AND win.published_at < cutoff.at AND o.published_at < cutoff.at
      RETURNING 1)
    SELECT (SELECT count(*) FROM win), (SELECT count(*) FROM gone), (SELECT max(id) FROM win),
           EXISTS (SELECT 1 FROM win, cutoff WHERE win.created_at >= cutoff.at)
      INTO examined, deleted, last_id, reached_recent;
    COMMIT;
    n := n + deleted;
    w := w + 1;
    EXIT WHEN reached_recent OR last_id IS NULL OR examined < size OR w >= windows;
    from_id := last_id + 1;
  END LOOP;
  RAISE NOTICE 'prune DELETE  window=%  windows=%  rows=%  ms=%  ms_per_window=%  rows_per_s=%  wal_bytes_per_row=%',
    size, w, n, round(extract(epoch FROM clock_timestamp() - t0) * 1000),
    round(extract(epoch FROM clock_timestamp() - t0) * 1000 / w, 1),
    round(n / greatest(extract(epoch FROM clock_timestamp() - t0), 0.001)),
    pg_wal_lsn_diff(pg_current_wal_lsn(), lsn0)::bigint / greatest(n, 1);
END $$;
SQL
# The second call starts from the bottom again, over the first one's dead rows
# (not vacuumed yet), as the next full sweep would.
q -c "CALL public.prune_windows(2000, 100)" 2>&1 | sed 's/^NOTICE:  //'
q -c "CALL public.prune_windows(10000, 20)" 2>&1 | sed 's/^NOTICE:  //'
per_day=$(( ROWS / DAYS ))
say "one day of rows = $per_day"

# A day's DELETE in one statement (what a naive cron would do), for scale.
# (No index on published_at: both the min() and the DELETE read the table.)
lsn0=$(q -c "SELECT pg_current_wal_lsn()")
t=$(ms)
n=$(q -c "WITH d AS (DELETE FROM events.outbox_event WHERE published_at < (SELECT min(published_at) FROM events.outbox_event) + interval '1 day' RETURNING 1) SELECT count(*) FROM d")
say "prune DELETE one day in one statement  rows=$n  ms=$(( $(ms) - t ))  wal_bytes=$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")"
t=$(ms); q -c "VACUUM events.outbox_event"; say "VACUUM after the deletes  ms=$(( $(ms) - t ))"

# DETACH + DROP of the oldest full day, timed by psql's \timing in one session.
detach_drop() { # $1 partition, $2 "" or CONCURRENTLY
  local rows lsn0 times
  rows=$(q -c "SELECT count(*) FROM events.$1")
  lsn0=$(q -c "SELECT pg_current_wal_lsn()")
  times=$(psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c '\timing on' \
    -c "ALTER TABLE events.outbox_event_by_day DETACH PARTITION events.$1 $2" -c "DROP TABLE events.$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | paste -sd' ')
  say "prune partition DETACH${2:+ $2}+DROP  rows=$rows  detach_ms drop_ms = $times  wal_bytes=$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")"
}
full_days=$(q -c "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events.outbox_event_by_day'::regclass ORDER BY c.relname OFFSET 1 LIMIT 2")
detach_drop "$(sed -n 1p <<<"$full_days")" ""
detach_drop "$(sed -n 2p <<<"$full_days")" CONCURRENTLY

# Insert cost into the partitioned table (routing) vs. the plain one.
sed 's/events.outbox_event /events.outbox_event_by_day /' "$WORK/domain-outbox.sql" > "$WORK/domain-outbox-by-day.sql"
for script in domain-outbox domain-outbox-by-day; do
  out=$(pgbench -n -d "$DB" -f "$WORK/$script.sql" -c 8 -j 8 -T 15 2>&1)
  say "insert  clients=8  $script  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")  latency_avg_ms=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
done

# The publisher's stream discovery (statements.ts, discoverStreams) against the
# big table: what one poll costs the database when NOTIFY cannot reach it.
DISCOVER="WITH RECURSIVE s AS (
  (SELECT stream_name FROM events.outbox_event WHERE published_at IS NULL ORDER BY stream_name LIMIT 1)
  UNION ALL
  SELECT (SELECT o.stream_name FROM events.outbox_event o WHERE o.published_at IS NULL AND o.stream_name > s.stream_name ORDER BY o.stream_name LIMIT 1)
  FROM s WHERE s.stream_name IS NOT NULL)
SELECT stream_name FROM s WHERE stream_name IS NOT NULL"
q -c "INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload) SELECT gen_random_uuid(), 'stream:s:n' || (g % 8), 'k', 'T', '{}' FROM generate_series(1, 1000) g"
echo "$DISCOVER" > "$WORK/discover.sql"
out=$(pgbench -n -d "$DB" -f "$WORK/discover.sql" -c 1 -T 10 2>&1)
say "poll: discovery query (8 streams with unpublished rows, $(q -c "SELECT count(*) FROM events.outbox_event") rows)  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")  latency_avg_ms=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
