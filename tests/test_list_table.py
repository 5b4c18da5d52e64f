"""The one-shot table (a terminal's default): one line per job, fitted, full handles kept."""

from __future__ import annotations

from conftest import launch_handle


def test_list_table_fits_80_columns_and_keeps_whole_handles(test_db, cli):
    dsn = test_db["app"]
    handle = launch_handle(cli, dsn, "SELECT pg_sleep(30)", "-l", "a-rather-long-label-for-a-narrow-terminal")
    try:
        res = cli("list", "--format", "table", "--limit", "5", dsn=dsn, env={"COLUMNS": "80"})
        assert res.exit_code == 0, res
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        assert lines[0].split()[0] == "HANDLE"
        assert all(len(line) <= 80 for line in lines), lines
        mine = [line for line in lines if line.startswith(handle + " ")]
        assert len(mine) == 1 and " running " in mine[0]
    finally:
        cli("cancel", handle, dsn=dsn)


def test_narrow_tables_never_cut_a_figure():
    from rich.console import Console

    from pgbg_cli.output import Column, rich_table

    columns = [Column("label", "LABEL")] + [Column(f"n{i}", f"HEADER{i}", justify="right") for i in range(11)]
    row = {"label": "a-label-that-must-fold", **{f"n{i}": 12345 + i for i in range(11)}}  # like "20.0s"
    console = Console(width=80, record=True, color_system=None)
    console.print(rich_table([row], columns))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for i in range(11):
        assert str(12345 + i) in text
