-- Change one of pgbg's settings (pgbg.set_setting: pgbg_admin only; the database checks
-- the value's type and range and refuses it with one line naming them).
SELECT s.name, s.value, s.description FROM pgbg.set_setting(%(name)s, %(value)s) s
