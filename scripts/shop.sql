-- The sample tables the README's examples use (database `shop`: `make shop`), owned by pgbg_app
-- so that it may VACUUM them, and audit_log, which is not its to read or VACUUM. Run as a
-- superuser, after `SET shop.rows = N` (orders per status; the README's outputs used 500000).
-- Idempotent: the tables are made again each time.
DROP TABLE IF EXISTS public.order_lines, public.orders, public.customers, public.audit_log;
DO $$
BEGIN
    FOR m IN 1..6 LOOP
        EXECUTE pg_catalog.format('DROP TABLE IF EXISTS public.%I', 'events_2026_' || pg_catalog.lpad(m::text, 2, '0'));
    END LOOP;
END
$$;

CREATE TABLE public.customers (
    id   bigint PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO public.customers
SELECT i, 'customer ' || i FROM pg_catalog.generate_series(1, 1000) AS i;

CREATE TABLE public.orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    total       numeric(12, 2) NOT NULL,
    total_cents bigint
);
INSERT INTO public.orders (id, customer_id, status, total)
SELECT i, 1 + i % 1000, (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + i % 4], (i % 10000) / 100.0
  FROM pg_catalog.generate_series(1, 4 * pg_catalog.current_setting('shop.rows')::bigint) AS i;

CREATE TABLE public.order_lines (
    order_id bigint NOT NULL,
    line     integer NOT NULL,
    sku      text NOT NULL,
    PRIMARY KEY (order_id, line)
);
INSERT INTO public.order_lines
SELECT i, 1, 'sku-' || i % 500 FROM pg_catalog.generate_series(1, pg_catalog.current_setting('shop.rows')::bigint) AS i;

CREATE TABLE public.audit_log (
    at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    what text NOT NULL
);
INSERT INTO public.audit_log (what) VALUES ('shop created');

-- a month of events per table, 2026-01 to 2026-06 (what a night's fan-out goes through)
DO $$
BEGIN
    FOR m IN 1..6 LOOP
        EXECUTE pg_catalog.format(
            'CREATE TABLE public.%I (id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL)',
            'events_2026_' || pg_catalog.lpad(m::text, 2, '0'));
        EXECUTE pg_catalog.format(
            'INSERT INTO public.%I SELECT i, %L::timestamptz + i * interval ''1 second'', ''view'' '
            'FROM pg_catalog.generate_series(1, $1) AS i',
            'events_2026_' || pg_catalog.lpad(m::text, 2, '0'), pg_catalog.format('2026-%s-01', m))
          USING m * pg_catalog.current_setting('shop.rows')::bigint / 10;
        EXECUTE pg_catalog.format('ALTER TABLE public.%I OWNER TO pgbg_app',
                                  'events_2026_' || pg_catalog.lpad(m::text, 2, '0'));
    END LOOP;
END
$$;

ALTER TABLE public.customers OWNER TO pgbg_app;
ALTER TABLE public.orders OWNER TO pgbg_app;
ALTER TABLE public.order_lines OWNER TO pgbg_app;
ANALYZE public.customers, public.orders, public.order_lines, public.audit_log;
