"""pipeline.Batch against the real server: statements sent together, each stretch between
syncs its own transaction, every answer (or error) where its statement left it."""

from __future__ import annotations

import psycopg
import pytest

from pgbg_cli import db
from pgbg_cli.pipeline import Batch, Skipped


@pytest.fixture
def conn(test_db):
    c = db.connect(test_db["app"])
    yield c
    c.close()


def test_a_failure_skips_the_rest_of_its_stretch_only(conn):
    batch = Batch(conn)
    first = batch.query("SELECT 1 AS n")
    broken = batch.query("SELECT 1 / 0 AS n")
    skipped = batch.query("SELECT 3 AS n")
    batch.sync()
    after = batch.query("SELECT 4 AS n")
    batch.run()
    assert first.rows() == [{"n": 1}]
    with pytest.raises(psycopg.errors.DivisionByZero):
        broken.rows()
    with pytest.raises(Skipped):
        skipped.rows()
    assert after.one() == {"n": 4}
    assert conn.execute("SELECT 5 AS n").fetchone() == {"n": 5}  # the connection goes on as before
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_each_stretch_is_a_transaction(conn):
    batch = Batch(conn)
    batch.query("SELECT pg_catalog.set_config('pgbg_test.undone', 'x', false)")
    batch.query("SELECT 1 / 0")
    batch.sync()
    batch.query("SELECT pg_catalog.set_config('pgbg_test.kept', 'y', false)")
    batch.run()
    row = conn.execute("SELECT current_setting('pgbg_test.undone', true) AS undone, "
                       "current_setting('pgbg_test.kept', true) AS kept").fetchone()
    assert row == {"undone": "", "kept": "y"} or row == {"undone": None, "kept": "y"}


def test_a_statement_is_parsed_after_the_one_before_ran(conn):
    batch = Batch(conn)
    batch.query("SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', false)")
    seen = batch.query("SELECT pg_catalog.current_schemas(false)::text AS path")
    batch.query("SELECT pg_catalog.set_config('search_path', %s, false)", (db.PINNED_PATH,))
    batch.run()
    assert seen.one() == {"path": "{public,pg_catalog}"}


def test_parameters_positional_named_and_percent(conn):
    batch = Batch(conn)
    positional = batch.query("SELECT %s::int + %s::int AS sum, 'a%%b' AS text", (1, 2))
    named = batch.query("SELECT %(x)s::text || %(y)s::text || %(x)s::text AS s", {"x": "a", "y": "b"})
    bare = batch.query("SELECT 'c%d' AS text")  # no parameters: sent as written
    arrays = batch.query("SELECT %s::bigint[] AS ids, %s::text AS nothing", ([1, 2], None))
    batch.run()
    assert positional.one() == {"sum": 3, "text": "a%b"}
    assert named.one() == {"s": "aba"}
    assert bare.one() == {"text": "c%d"}
    assert arrays.one() == {"ids": [1, 2], "nothing": None}


def test_describe_tells_columns_or_the_error(conn):
    batch = Batch(conn)
    good = batch.describe("SELECT 1::int AS a, 'x'::text AS b")
    batch.sync()
    bad = batch.describe("SELEC 1")
    batch.sync()
    several = batch.describe("SELECT 1; SELECT 2")
    batch.run()
    assert good.ok and good.result is not None
    assert [good.result.fname(i) for i in range(good.result.nfields)] == [b"a", b"b"]
    assert [good.result.ftype(i) for i in range(good.result.nfields)] == [23, 25]
    assert isinstance(bad.error, psycopg.errors.SyntaxError)
    assert "multiple commands" in str(several.error)


def test_a_value_that_cannot_be_sent_leaves_the_connection_usable(conn):
    batch = Batch(conn)
    batch.query("SELECT 1")
    batch.query("SELECT %s", (object(),))
    with pytest.raises(psycopg.ProgrammingError):
        batch.run()
    assert conn.execute("SELECT 6 AS n").fetchone() == {"n": 6}
