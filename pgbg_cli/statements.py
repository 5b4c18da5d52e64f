"""The statements of a job's SQL, as PostgreSQL's own lexer would split them.

PostgreSQL has no SQL function that splits a string into statements, so this is a lexer
that follows the server's rules (scan.l) for what can hide a semicolon: quoted strings
(standard, E'...' with backslash escapes, and plain ones with backslash escapes when
standard_conforming_strings is off), quoted identifiers, dollar quotes, line comments and
nested block comments. A semicolon ends a statement only outside parentheses and outside a
CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ... END body (psql's own rule). It is only ever
used on SQL the server has already parsed whole; what it finds is checked again by the
server before pgbg refuses anything (``precheck``).

It also names the commands PostgreSQL runs only as a statement of their own (those that call
PreventInTransactionBlock(): inside a job of several statements they fail with SQLSTATE
25001, "... cannot be executed from a function") and those pg_background never runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# kinds of token
WORD = "word"  # an unquoted keyword or identifier, ASCII-lowercased as the server folds it
IDENT = "ident"  # a quoted identifier, unquoted
STRING = "string"
NUMBER = "number"
PARAM = "param"  # $1
PUNCT = "punct"  # ( ) , . ; * and operators


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    start: int
    end: int
    exact: bool = True  # False for U&"..." identifiers: their value is not decoded here


@dataclass
class Statement:
    """One statement: its text as written (no trailing semicolon) and its tokens."""

    text: str
    tokens: list[Token] = field(default_factory=list)

    def words(self, n: int = 8) -> list[str]:
        """The first ``n`` tokens as the server reads keywords: lowercased words, else the value."""
        return [t.value for t in self.tokens[:n]]


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_" or ord(ch) >= 0x80


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$" or ord(ch) >= 0x80


def _lower_ascii(text: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in text)


class _Lexer:
    def __init__(self, sql: str, standard_strings: bool) -> None:
        self.sql = sql
        self.n = len(sql)
        self.standard = standard_strings

    def _skip_block_comment(self, i: int) -> int:
        depth = 0
        while i < self.n:
            if self.sql.startswith("/*", i):
                depth += 1
                i += 2
            elif self.sql.startswith("*/", i):
                depth -= 1
                i += 2
                if depth == 0:
                    return i
            else:
                i += 1
        return i

    def _quoted(self, i: int, quote: str, backslashes: bool) -> int:
        """Index just past the closing quote of a literal opened at ``i`` (the quote itself)."""
        i += 1
        while i < self.n:
            ch = self.sql[i]
            if backslashes and ch == "\\":
                i += 2
                continue
            if ch == quote:
                if i + 1 < self.n and self.sql[i + 1] == quote:
                    i += 2
                    continue
                return i + 1
            i += 1
        return i

    def _dollar_tag(self, i: int) -> str | None:
        """The dollar-quote opener at ``i`` ($tag$ or $$), or None."""
        j = i + 1
        if j < self.n and self.sql[j] == "$":
            return "$$"
        if j < self.n and _is_ident_start(self.sql[j]):
            j += 1
            while j < self.n and (self.sql[j].isalnum() or self.sql[j] == "_" or ord(self.sql[j]) >= 0x80):
                j += 1
            if j < self.n and self.sql[j] == "$":
                return self.sql[i:j + 1]
        return None

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        sql, n = self.sql, self.n
        i = 0
        while i < n:
            ch = sql[i]
            if ch.isspace():
                i += 1
            elif sql.startswith("--", i):
                j = sql.find("\n", i)
                i = n if j < 0 else j + 1
            elif sql.startswith("/*", i):
                i = self._skip_block_comment(i)
            elif ch == "'":
                j = self._quoted(i, "'", backslashes=not self.standard)
                out.append(Token(STRING, sql[i + 1:j - 1].replace("''", "'"), i, j))
                i = j
            elif ch in "eE" and i + 1 < n and sql[i + 1] == "'":
                j = self._quoted(i + 1, "'", backslashes=True)
                out.append(Token(STRING, sql[i + 2:j - 1], i, j))
                i = j
            elif ch in "bBxXnN" and i + 1 < n and sql[i + 1] == "'":
                j = self._quoted(i + 1, "'", backslashes=False)
                out.append(Token(STRING, sql[i + 2:j - 1], i, j))
                i = j
            elif ch in "uU" and sql.startswith("&'", i + 1):
                j = self._quoted(i + 2, "'", backslashes=False)
                out.append(Token(STRING, sql[i + 3:j - 1], i, j, exact=False))
                i = j
            elif ch in "uU" and sql.startswith('&"', i + 1):
                j = self._quoted(i + 2, '"', backslashes=False)
                out.append(Token(IDENT, sql[i + 3:j - 1], i, j, exact=False))
                i = j
            elif ch == '"':
                j = self._quoted(i, '"', backslashes=False)
                out.append(Token(IDENT, sql[i + 1:j - 1].replace('""', '"'), i, j))
                i = j
            elif ch == "$":
                tag = self._dollar_tag(i)
                if tag is not None:
                    close = sql.find(tag, i + len(tag))
                    j = n if close < 0 else close + len(tag)
                    out.append(Token(STRING, sql[i + len(tag):close if close >= 0 else n], i, j))
                    i = j
                else:
                    j = i + 1
                    while j < n and sql[j].isdigit():
                        j += 1
                    out.append(Token(PARAM if j > i + 1 else PUNCT, sql[i:j], i, j))
                    i = j
            elif _is_ident_start(ch):
                j = i + 1
                while j < n and _is_ident_char(sql[j]):
                    j += 1
                out.append(Token(WORD, _lower_ascii(sql[i:j]), i, j))
                i = j
            elif ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit()):
                j = i + 1
                while j < n and (sql[j].isalnum() or sql[j] in "._"):
                    j += 1
                out.append(Token(NUMBER, sql[i:j], i, j))
                i = j
            else:
                out.append(Token(PUNCT, ch, i, i + 1))
                i += 1
        return out


def split(sql: str, *, standard_strings: bool = True) -> list[Statement]:
    """The non-empty statements of ``sql``, in order."""
    statements: list[Statement] = []
    current: list[Token] = []
    depth = 0  # parentheses
    begin_depth = 0  # BEGIN ... END of a CREATE FUNCTION/PROCEDURE body (BEGIN ATOMIC)
    start = 0
    for tok in _Lexer(sql, standard_strings).tokens():
        if tok.kind == PUNCT and tok.value == ";" and depth == 0 and begin_depth == 0:
            if current:
                statements.append(Statement(sql[start:tok.start].strip(), current))
            current = []
            start = tok.end
            continue
        if tok.kind == PUNCT and tok.value == "(":
            depth += 1
        elif tok.kind == PUNCT and tok.value == ")":
            depth = max(0, depth - 1)
        elif tok.kind == WORD and depth == 0 and _routine_definition(current):
            if tok.value == "begin" or (tok.value == "case" and begin_depth > 0):  # CASE ... END too
                begin_depth += 1
            elif tok.value == "end" and begin_depth > 0:
                begin_depth -= 1
        current.append(tok)
    if current:
        statements.append(Statement(sql[start:].strip(), current))
    return statements


def _routine_definition(tokens: list[Token]) -> bool:
    """Whether a statement so far reads CREATE [OR REPLACE] FUNCTION/PROCEDURE."""
    words = [t.value if t.kind == WORD else "" for t in tokens[:4]]
    if words[:1] != ["create"]:
        return False
    if words[1:2] in (["function"], ["procedure"]):
        return True
    return words[1:3] == ["or", "replace"] and words[3:4] in (["function"], ["procedure"])


# --- what a statement is ------------------------------------------------------------------

TRANSACTION_CONTROL = {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
OFF = {"false", "off", "0"}


def _option_on(tokens: list[Token], i: int, name: str) -> bool:
    """In a parenthesized option list opening at ``i``: is option ``name`` given and not off?"""
    depth = 0
    for k in range(i, len(tokens)):
        t = tokens[k]
        if t.kind == PUNCT and t.value == "(":
            depth += 1
        elif t.kind == PUNCT and t.value == ")":
            depth -= 1
            if depth == 0:
                return False
        elif depth == 1 and t.kind == WORD and t.value == name:
            value = tokens[k + 1] if k + 1 < len(tokens) else None
            if value is not None and value.kind == PUNCT and value.value == "=":
                value = tokens[k + 2] if k + 2 < len(tokens) else None
            if value is None or (value.kind == PUNCT and value.value in ",)"):
                return True
            return _lower_ascii(value.value) not in OFF
    return False


def _close_paren(tokens: list[Token], i: int) -> int:
    """The index just past the parenthesis that closes the one at ``i``."""
    depth = 0
    for k in range(i, len(tokens)):
        t = tokens[k]
        if t.kind == PUNCT and t.value == "(":
            depth += 1
        elif t.kind == PUNCT and t.value == ")":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(tokens)


def never_in_a_job(stmt: Statement) -> tuple[str, str] | None:
    """(the command, why) if pg_background refuses it in any job (SQLSTATE 0A000), else None."""
    w = stmt.words(2)
    if not w or stmt.tokens[0].kind != WORD:
        return None
    if w[0] == "start" and w[1:2] != ["transaction"]:
        return None
    if w[0] in TRANSACTION_CONTROL or (w[0] == "prepare" and w[1:2] == ["transaction"]):
        shown = " ".join(w[:2]) if w[1:2] in (["transaction"], ["prepared"]) else w[0]
        return shown.upper(), "pg_background refuses transaction control statements (a job runs as one transaction)"
    if w[0] == "listen":
        return "LISTEN", "a background worker cannot listen for notifications"
    return None


def must_run_alone(stmt: Statement) -> str | None:
    """The command if PostgreSQL runs it only as a statement of its own, else None.

    Only what the statement's own words decide; REINDEX TABLE/INDEX and CLUSTER of a
    partitioned table also must run alone, which takes the catalog (``relation_targets``).
    """
    toks = stmt.tokens
    w = stmt.words(6)
    if not w or toks[0].kind != WORD:
        return None
    head = w[0]
    if head == "vacuum":
        return "VACUUM"
    if head == "create":
        rest = w[1:]
        if rest[:1] == ["unique"]:
            rest = rest[1:]
        if rest[:2] == ["index", "concurrently"]:
            return "CREATE INDEX CONCURRENTLY"
        if w[1:2] == ["database"]:
            return "CREATE DATABASE"
        if w[1:2] == ["tablespace"]:
            return "CREATE TABLESPACE"
        if w[1:2] == ["subscription"] and _creates_slot(toks):
            return "CREATE SUBSCRIPTION (creating a replication slot)"
        return None
    if head == "drop":
        if w[1:3] == ["index", "concurrently"]:
            return "DROP INDEX CONCURRENTLY"
        if w[1:2] == ["database"]:
            return "DROP DATABASE"
        if w[1:2] == ["tablespace"]:
            return "DROP TABLESPACE"
        return None
    if head == "reindex":
        i = 1
        if i < len(toks) and toks[i].kind == PUNCT and toks[i].value == "(":
            if _option_on(toks, i, "concurrently"):
                return "REINDEX CONCURRENTLY"
            i = _close_paren(toks, i)
        target = toks[i].value if i < len(toks) and toks[i].kind == WORD else ""
        concurrently = i + 1 < len(toks) and toks[i + 1].kind == WORD and toks[i + 1].value == "concurrently"
        if target in ("index", "table", "schema", "database", "system") and concurrently:
            return "REINDEX CONCURRENTLY"
        if target in ("schema", "database", "system"):
            return f"REINDEX {target.upper()}"
        return None
    if head == "alter":
        if w[1:2] == ["system"]:
            return "ALTER SYSTEM"
        if w[1:2] == ["database"] and len(w) >= 5 and w[3:5] == ["set", "tablespace"]:
            after = toks[5] if len(toks) > 5 else None
            if after is not None and not (after.kind == PUNCT and after.value == "=") and after.value != "to":
                return "ALTER DATABASE ... SET TABLESPACE"
            return None
        if w[1:2] == ["table"] and _detach_concurrently(toks):
            return "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"
        return None
    if head == "cluster" and _cluster_of_all(toks):
        return "CLUSTER (of every table)"
    if head == "discard" and w[1:2] == ["all"]:
        return "DISCARD ALL"
    return None


def _creates_slot(toks: list[Token]) -> bool:
    """CREATE SUBSCRIPTION makes a replication slot unless WITH (connect = false) or (create_slot = false)."""
    for k, t in enumerate(toks):
        if t.kind == WORD and t.value == "with" and k + 1 < len(toks) and toks[k + 1].value == "(":
            for name in ("connect", "create_slot"):
                if _option_given_off(toks, k + 1, name):
                    return False
    return True


def _option_given_off(toks: list[Token], i: int, name: str) -> bool:
    depth = 0
    for k in range(i, len(toks)):
        t = toks[k]
        if t.kind == PUNCT and t.value == "(":
            depth += 1
        elif t.kind == PUNCT and t.value == ")":
            depth -= 1
            if depth == 0:
                return False
        elif depth == 1 and t.kind == WORD and t.value == name:
            value = toks[k + 1] if k + 1 < len(toks) else None
            if value is not None and value.kind == PUNCT and value.value == "=":
                value = toks[k + 2] if k + 2 < len(toks) else None
            return value is not None and _lower_ascii(value.value) in OFF
    return False


def _detach_concurrently(toks: list[Token]) -> bool:
    depth = 0
    seen_detach = False
    for k, t in enumerate(toks):
        if t.kind == PUNCT and t.value == "(":
            depth += 1
        elif t.kind == PUNCT and t.value == ")":
            depth -= 1
        elif depth == 0 and t.kind == WORD:
            if t.value == "detach" and k + 1 < len(toks) and toks[k + 1].value == "partition":
                seen_detach = True
            elif seen_detach and t.value == "concurrently":
                return True
    return False


# --- the relations a maintenance command names ---------------------------------------------

@dataclass(frozen=True)
class Target:
    """A relation named by a statement: its name as the server would read it (for to_regclass)."""

    name: str


def _qualified_name(toks: list[Token], i: int) -> tuple[str | None, int]:
    """A (possibly qualified) name at ``i`` as text for to_regclass, and the index after it.

    None when the tokens there are not a plain name, or hold a U&"..." part."""
    parts: list[str] = []
    exact = True
    while i < len(toks) and toks[i].kind in (WORD, IDENT):
        t = toks[i]
        exact = exact and t.exact
        parts.append(t.value if t.kind == WORD else '"' + t.value.replace('"', '""') + '"')
        i += 1
        if i < len(toks) and toks[i].kind == PUNCT and toks[i].value == "." and i + 1 < len(toks) \
                and toks[i + 1].kind in (WORD, IDENT):
            i += 1
            continue
        break
    if not parts or not exact:
        return None, i
    return ".".join(parts), i


def _is(toks: list[Token], i: int, value: str, kind: str = PUNCT) -> bool:
    return i < len(toks) and toks[i].kind == kind and toks[i].value == value


def vacuum_targets(stmt: Statement) -> tuple[str, list[Target]] | None:
    """For VACUUM or ANALYZE naming tables: ("VACUUM"/"ANALYZE", the tables). None otherwise,
    or when the list is not read to its end (then nothing is checked)."""
    toks = stmt.tokens
    if not toks or toks[0].kind != WORD or toks[0].value not in ("vacuum", "analyze", "analyse"):
        return None
    command = "VACUUM" if toks[0].value == "vacuum" else "ANALYZE"
    i = 1
    if _is(toks, i, "("):
        i = _close_paren(toks, i)
    else:
        # the old syntax's flags, in the grammar's order
        flags = (("full",), ("freeze",), ("verbose",), ("analyze", "analyse")) if command == "VACUUM" \
            else (("verbose",),)
        for spellings in flags:
            if i < len(toks) and toks[i].kind == WORD and toks[i].value in spellings:
                i += 1
    targets: list[Target] = []
    while i < len(toks):
        if toks[i].kind == WORD and toks[i].value == "only":
            i += 1
        wrapped = _is(toks, i, "(")
        if wrapped:
            i += 1
        name, i = _qualified_name(toks, i)
        if name is None:
            return None
        if wrapped:
            if not _is(toks, i, ")"):
                return None
            i += 1
        if _is(toks, i, "*"):
            i += 1
        if _is(toks, i, "("):
            i = _close_paren(toks, i)
        targets.append(Target(name))
        if i == len(toks):
            break
        if not _is(toks, i, ","):
            return None
        i += 1
    return (command, targets) if targets else None


def partition_sensitive_target(stmt: Statement) -> tuple[str, Target] | None:
    """REINDEX TABLE/INDEX name or CLUSTER name: run alone only when the relation is partitioned.

    Returns (command, the relation), or None."""
    toks = stmt.tokens
    if not toks or toks[0].kind != WORD:
        return None
    if toks[0].value == "reindex":
        i = 1
        if _is(toks, i, "("):
            i = _close_paren(toks, i)
        if i < len(toks) and toks[i].kind == WORD and toks[i].value in ("table", "index"):
            kind = toks[i].value
            name, end = _qualified_name(toks, i + 1)
            if name is not None and end == len(toks):
                return f"REINDEX {kind.upper()} (of a partitioned {kind})", Target(name)
        return None
    if toks[0].value == "cluster":
        target = _cluster_target(stmt)
        if target is not None:
            return "CLUSTER (of a partitioned table)", target
    return None


def _cluster_of_all(toks: list[Token]) -> bool:
    """CLUSTER, CLUSTER VERBOSE or CLUSTER (options): no table named."""
    i = 1
    if _is(toks, i, "("):
        i = _close_paren(toks, i)
    elif i < len(toks) and toks[i].kind == WORD and toks[i].value == "verbose":
        i += 1
    return i >= len(toks)


def _cluster_target(stmt: Statement) -> Target | None:
    """The table CLUSTER names; None for CLUSTER of every table (or what is not read)."""
    toks = stmt.tokens
    i = 1
    if _is(toks, i, "("):
        i = _close_paren(toks, i)
    elif i < len(toks) and toks[i].kind == WORD and toks[i].value == "verbose":
        i += 1
    if i >= len(toks):
        return None
    name, end = _qualified_name(toks, i)
    if name is None:
        return None
    if end < len(toks) and toks[end].kind == WORD and toks[end].value == "on":  # CLUSTER index ON table
        table, _ = _qualified_name(toks, end + 1)
        return Target(table) if table else None
    return Target(name)


def excerpt(text: str, width: int = 60) -> str:
    """A statement on one line, cut to ``width`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."
