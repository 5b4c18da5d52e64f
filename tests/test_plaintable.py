"""Plain-text tables (pgbg_cli.plaintable) read exactly as tabulate's "simple" format did."""

from __future__ import annotations

import random

import pytest
from tabulate import tabulate

from pgbg_cli.plaintable import simple

PIECES = ["a", "Z", "1", " ", "  ", "\n", "-", "日", "é", "\u00a0", "x y", "42", "-7", "1e5", "None", ""]


def _text(rnd: random.Random, most: int) -> str:
    return "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, most)))


def _tabulated(body: list[list[str]], headers: list[str]) -> str:
    return tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


@pytest.mark.parametrize("seed", range(4))
def test_any_table_reads_as_tabulate_printed_it(seed):
    rnd = random.Random(seed)
    for _ in range(500):
        cols = rnd.randint(1, 5)
        headers = [_text(rnd, 4).replace("\n", "") or "H" for _ in range(cols)]
        body = [[_text(rnd, 6) for _ in range(cols)] for _ in range(rnd.randint(1, 5))]
        assert simple(body, headers) == _tabulated(body, headers), (headers, body)


@pytest.mark.parametrize("body, headers", [
    ([["1:22", "succeeded", ""], ["10:5", "running", "[###-------]  30%"]], ["HANDLE", "STATE", "PROGRESS"]),
    ([["a", "first line\nsecond, longer line"], ["", ""]], ["K", "V"]),  # a renderer's lines
    ([["  padded  ", "numbers 0042 stay text"]], [" KEPT", "X"]),
    ([], ["ONLY", "HEADERS"]),
])
def test_listings_as_before(body, headers):
    assert simple(body, headers) == _tabulated(body, headers)
