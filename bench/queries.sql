-- name: q1_count_by_category
-- Reports per service category, most frequent first (ties broken by code so
-- every engine returns the same order).
SELECT service_code, count(*) AS n
FROM reports
GROUP BY service_code
ORDER BY n DESC, service_code

-- name: q2_commune_status_month
-- Reports per commune and status requested in April 2025, local time (+07:00).
-- Bounds: the instants 2025-04-01T00:00:00+07:00 and 2025-05-01T00:00:00+07:00,
-- written in UTC with an explicit offset so they mean the same whatever the
-- session time zone. Standard CAST(... AS TIMESTAMP WITH TIME ZONE) runs on
-- DataFusion 55, DuckDB 1.x/2.x and Polars >= 2. Not used: TIMESTAMP '...' /
-- CAST(... AS TIMESTAMP) (Polars refuses naive vs UTC), TIMESTAMPTZ '...'
-- (Polars 1.x refuses), bare strings (Polars 1.x refuses offsets; a naive
-- string depends on the session time zone in DuckDB and DataFusion).
-- Polars 1.x cannot run this form at all: peers.py then uses a Polars
-- expression instead.
SELECT x_reported_commune, status, count(*) AS n
FROM reports
WHERE requested_datetime >= CAST('2025-03-31 17:00:00+00:00' AS TIMESTAMP WITH TIME ZONE)
  AND requested_datetime < CAST('2025-04-30 17:00:00+00:00' AS TIMESTAMP WITH TIME ZONE)
GROUP BY x_reported_commune, status
ORDER BY x_reported_commune, status

-- name: q3_late_share_by_commune
-- Share of closed reports answered more than 3 days after they were made,
-- per commune. Written as "updated > requested + INTERVAL '3 days'" on purpose:
-- in DataFusion 55, "updated - requested > INTERVAL '3 days'" compares a
-- Duration with a day-based Interval and silently gives 0 for every row.
SELECT x_reported_commune,
       CAST(sum(CASE WHEN updated_datetime > requested_datetime + INTERVAL '3 days' THEN 1 ELSE 0 END) AS DOUBLE)
         / count(*) AS late_share,
       count(*) AS n
FROM reports
WHERE status = 'closed'
GROUP BY x_reported_commune
ORDER BY late_share DESC, x_reported_commune

-- name: q4_newest_rac
-- The 20 newest reports whose description mentions 'rác' (rubbish); the id
-- breaks ties between reports made in the same second.
SELECT service_request_id, requested_datetime, description
FROM reports
WHERE description LIKE '%rác%'
ORDER BY requested_datetime DESC, service_request_id DESC
LIMIT 20
