-- The demo dataset behind Cube's `orders` cube: deterministic (no random()), two organizations
-- over 2026-01-01 .. 2027-01-31. Organization 1 has 4 orders a day of 5-205 (currency units),
-- organization 2 has 3 a day of 500-20,500, so a tenant leak is obvious in any total.
-- Order times wander over the day (UTC), so UTC and Pacific/Auckland day buckets differ.
-- Each order has a customer (53 per organization, each buying several times a week), so a count
-- of distinct customers over a week is not the sum of the daily counts.
-- Loaded by devstack.cube.load_analytics_data() in one transaction; the table comment marks the version.
DROP TABLE IF EXISTS public.orders;

CREATE TABLE public.orders (
    id              bigint PRIMARY KEY,
    organization_id integer NOT NULL,
    created_at      timestamptz NOT NULL,
    status          text NOT NULL,
    category        text NOT NULL,
    total_amount    numeric(12, 2) NOT NULL,
    -- last, and NULL for rows tests insert without one (not counted as customers)
    customer_id     bigint
);

INSERT INTO public.orders (id, organization_id, created_at, status, category, total_amount, customer_id)
SELECT org * 1000000 + d * 10 + k,
       org,
       timestamptz '2026-01-01 00:00:00+00'
           + make_interval(days => d, hours => (k * 7 + d) % 24, mins => (d * 13 + k * 17) % 60),
       (ARRAY['completed', 'completed', 'pending', 'cancelled'])[(d + k) % 4 + 1],
       (ARRAY['books', 'electronics', 'garden'])[(d + 2 * k) % 3 + 1],
       CASE org
           WHEN 1 THEN ((d * 7 + k * 13) % 200 + 5) + ((d + k) % 100) / 100.0
           ELSE (((d * 11 + k * 29) % 200 + 5) + ((d * 3 + k) % 100) / 100.0) * 100
       END,
       org * 100000 + (d * 5 + k * 11) % 53 + 1
FROM generate_series(0, 395) AS d
CROSS JOIN (VALUES (1), (2)) AS orgs (org)
CROSS JOIN generate_series(1, 4) AS k
WHERE k <= CASE org WHEN 1 THEN 4 ELSE 3 END;

CREATE INDEX orders_org_created_at ON public.orders (organization_id, created_at);

ANALYZE public.orders;

COMMENT ON TABLE public.orders IS 'kpi-alerts demo dataset v4';
