-- pgbg schema version 4: what `pgbg grant` gave. Applied once, in one transaction, by
-- `pgbg init`, after version 3.

-- Whether `pgbg grant` gave the role pgbackground_role (it was not a member before): only then
-- does `pgbg revoke` take it back. Roles granted before this version: false (kept on revoke).
ALTER TABLE pgbg.role_key ADD COLUMN granted_extension_role boolean NOT NULL DEFAULT false;
