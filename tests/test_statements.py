"""The statement splitter and what it tells about a statement (pure, no server).

The server-side half (launch refuses them, the split checked by the server) is in
tests/test_precheck.py.
"""

from __future__ import annotations

import pytest

from pgbg_cli import statements as st


def texts(sql: str, **kw: bool) -> list[str]:
    return [s.text for s in st.split(sql, **kw)]


@pytest.mark.parametrize(("sql", "expected"), [
    ("VACUUM a; VACUUM b", ["VACUUM a", "VACUUM b"]),
    ("VACUUM a;", ["VACUUM a"]),
    ("VACUUM a;; -- done\n", ["VACUUM a"]),
    ("  ;  ; ", []),
    ("SELECT 'x; VACUUM a'; SELECT 2", ["SELECT 'x; VACUUM a'", "SELECT 2"]),
    ("SELECT 'it''s; here'; SELECT 2", ["SELECT 'it''s; here'", "SELECT 2"]),
    ("SELECT E'it\\'s; here'; SELECT 2", ["SELECT E'it\\'s; here'", "SELECT 2"]),
    ("SELECT $$ ; $$; SELECT 2", ["SELECT $$ ; $$", "SELECT 2"]),
    ("SELECT $t$ $$ ; $t$; SELECT 2", ["SELECT $t$ $$ ; $t$", "SELECT 2"]),
    ("SELECT a$b$c FROM t; SELECT $1", ["SELECT a$b$c FROM t", "SELECT $1"]),  # $ inside a name
    ('SELECT "a;b" FROM "t;"; SELECT 2', ['SELECT "a;b" FROM "t;"', "SELECT 2"]),
    ('SELECT U&"a;b"; SELECT 2', ['SELECT U&"a;b"', "SELECT 2"]),
    ("SELECT 1 -- a; b\n; SELECT 2", ["SELECT 1 -- a; b", "SELECT 2"]),
    ("SELECT 1 /* a /* nested; */ still; */; SELECT 2", ["SELECT 1 /* a /* nested; */ still; */", "SELECT 2"]),
    # a rule's actions, in parentheses
    ("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1",
     ["CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))", "SELECT 1"]),
    # a SQL-standard function body (psql's rule: BEGIN ... END, CASE ... END inside it)
    ("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
     "SELECT CASE WHEN true THEN 1 END; END; VACUUM x",
     ["CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
      "SELECT CASE WHEN true THEN 1 END; END", "VACUUM x"]),
    ("CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END; CALL p()",
     ["CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END", "CALL p()"]),
    ("DO $do$ BEGIN PERFORM 1; END $do$; SELECT 2", ["DO $do$ BEGIN PERFORM 1; END $do$", "SELECT 2"]),
])
def test_split(sql, expected):
    assert texts(sql) == expected


def test_backslashes_quote_in_plain_strings_only_when_strings_are_not_standard():
    sql = "SELECT 'a\\'; SELECT 2"
    assert texts(sql) == ["SELECT 'a\\'", "SELECT 2"]
    assert texts(sql + "'", standard_strings=False) == [sql + "'"]


@pytest.mark.parametrize(("sql", "command"), [
    ("VACUUM t", "VACUUM"),
    ("vacuum (analyze) t", "VACUUM"),
    ("VACUUM", "VACUUM"),
    ("CREATE INDEX CONCURRENTLY i ON t (x)", "CREATE INDEX CONCURRENTLY"),
    ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x)", "CREATE INDEX CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
    ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
    ("REINDEX INDEX CONCURRENTLY i", "REINDEX CONCURRENTLY"),
    ("REINDEX (CONCURRENTLY) TABLE t", "REINDEX CONCURRENTLY"),
    ("REINDEX (VERBOSE, CONCURRENTLY true) TABLE t", "REINDEX CONCURRENTLY"),
    ("REINDEX SCHEMA public", "REINDEX SCHEMA"),
    ("REINDEX DATABASE", "REINDEX DATABASE"),
    ("REINDEX SYSTEM", "REINDEX SYSTEM"),
    ("CREATE DATABASE d", "CREATE DATABASE"),
    ("DROP DATABASE IF EXISTS d", "DROP DATABASE"),
    ("ALTER DATABASE d SET TABLESPACE ts", "ALTER DATABASE ... SET TABLESPACE"),
    ("CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE"),
    ("DROP TABLESPACE ts", "DROP TABLESPACE"),
    ("ALTER SYSTEM SET work_mem = '4MB'", "ALTER SYSTEM"),
    ("CLUSTER", "CLUSTER (of every table)"),
    ("CLUSTER VERBOSE", "CLUSTER (of every table)"),
    ("CLUSTER (VERBOSE)", "CLUSTER (of every table)"),
    ("DISCARD ALL", "DISCARD ALL"),
    ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"),
    ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", "CREATE SUBSCRIPTION (creating a replication slot)"),
    # what runs in a transaction block
    ("ANALYZE t", None),
    ("ANALYZE", None),
    ("REINDEX TABLE t", None),
    ("REINDEX (CONCURRENTLY false) TABLE t", None),
    ("CREATE INDEX i ON t (x)", None),
    ("DROP INDEX i", None),
    ("CLUSTER t USING i", None),
    ("DISCARD PLANS", None),
    ("ALTER DATABASE d SET work_mem TO '1MB'", None),
    ("ALTER TABLE p DETACH PARTITION p1 FINALIZE", None),
    ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (connect = false)", None),
    ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (create_slot = off)", None),
    ("SELECT 'VACUUM'", None),
    ('"vacuum"', None),
])
def test_must_run_alone(sql, command):
    [stmt] = st.split(sql)
    assert st.must_run_alone(stmt) == command


@pytest.mark.parametrize(("sql", "command"), [
    ("BEGIN", "BEGIN"), ("begin transaction", "BEGIN TRANSACTION"), ("START TRANSACTION", "START TRANSACTION"),
    ("COMMIT", "COMMIT"), ("END", "END"), ("ROLLBACK", "ROLLBACK"), ("ABORT", "ABORT"),
    ("SAVEPOINT a", "SAVEPOINT"), ("RELEASE a", "RELEASE"), ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
    ("COMMIT PREPARED 'x'", "COMMIT PREPARED"), ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
    ("LISTEN x", "LISTEN"),
    ("PREPARE q AS SELECT 1", None), ("NOTIFY x", None), ("UNLISTEN *", None), ("SELECT 1", None),
])
def test_never_in_a_job(sql, command):
    [stmt] = st.split(sql)
    found = st.never_in_a_job(stmt)
    assert (found[0] if found else None) == command


@pytest.mark.parametrize(("sql", "expected"), [
    ("VACUUM t", ("VACUUM", ["t"])),
    ("VACUUM FULL FREEZE VERBOSE ANALYZE s.t", ("VACUUM", ["s.t"])),
    ('VACUUM (ANALYZE, VERBOSE) public."My T" (a, b), ONLY x, y *', ("VACUUM", ['public."My T"', "x", "y"])),
    ("VACUUM ONLY (t)", ("VACUUM", ["t"])),
    ("ANALYZE VERBOSE t", ("ANALYZE", ["t"])),
    ("ANALYSE t", ("ANALYZE", ["t"])),
    ("ANALYZE (SKIP_LOCKED) Big_Table", ("ANALYZE", ["big_table"])),
    ("VACUUM", None),
    ("ANALYZE VERBOSE", None),
    ('VACUUM U&"t"', None),  # not decoded here: not checked
    ("VACUUM t WHERE", None),  # not read to its end: not checked
])
def test_vacuum_targets(sql, expected):
    [stmt] = st.split(sql)
    found = st.vacuum_targets(stmt)
    assert (None if found is None else (found[0], [t.name for t in found[1]])) == expected


@pytest.mark.parametrize(("sql", "name"), [
    ("REINDEX TABLE pt", "pt"),
    ("REINDEX (VERBOSE) INDEX s.pti", "s.pti"),
    ("CLUSTER pt USING i", "pt"),
    ("CLUSTER VERBOSE pt", "pt"),
    ("CLUSTER i ON pt", "pt"),
    ("CLUSTER", None),
    ("REINDEX SCHEMA s", None),
])
def test_partition_sensitive_target(sql, name):
    [stmt] = st.split(sql)
    found = st.partition_sensitive_target(stmt)
    assert (found[1].name if found else None) == name


def test_excerpt_is_one_line_and_short():
    assert st.excerpt("SELECT\n   1,\t2") == "SELECT 1, 2"
    assert st.excerpt("x" * 100, 20) == "x" * 17 + "..."
