-- Change one of pgbg's settings (pgbg_admin only: others lack UPDATE on pgbg.settings).
UPDATE pgbg.settings SET value = %(value)s WHERE name = %(name)s RETURNING name, value, description
