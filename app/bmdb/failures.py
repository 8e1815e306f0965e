"""Failure signatures: failure causes grouped by what they say, not by the IDs, addresses,
numbers and durations in them.

A cause's **signature** is the cause with UUIDs, timestamps, IP addresses (v4 and v6),
hex strings, durations and numbers replaced by placeholders (`SIGNATURE_STEPS`). It is
computed in SQL, by nested `regexp_replace` calls whose patterns use only what
PostgreSQL's regular expressions and CockroachDB's (Go's RE2) both read the same way:
bracket classes, counted repetition, `(?:...)`, `^`/`$` and `\\1` in the replacement; no
`\\b`, no lookaround. Word boundaries are spelled as a captured non-word character (or
the start/end) put back by the replacement; a boundary consumed by one match cannot start
the next, so each such step runs twice ("1 2 3": the first pass replaces 1 and 3).

Two sources, each one statement returning the groups with their machine IDs:
- active backoffs (`until > now()`): read like counts, at most once per
  WEBUG_COUNT_CACHE_SECONDS and shared (app/bmdb/counts.py);
- `Failed` events of work_history within a window: no index on the timestamp, so a scan
  of the whole table, shared and budgeted (app/bmdb/history_reads.py).
Each distinct cause is normalized once: the regular expressions cost more than the scan.
The machine list's `failure=` filter lists exactly a group's machines, by their IDs
(app/bmdb/filters.py): recomputing a group inside every list statement (and every poll)
would normalize every active backoff, or scan work_history, each time.

A group's ID names its source and signature, stable across requests and processes:
`backoff-<digest>` or `history-<window>-<digest>`, where the digest is the first 12 hex
digits of the md5 of the signature (computed by the database, like the signature).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.bmdb.connection import Reader

# --- signatures -------------------------------------------------------------------------

_WORD = "0-9A-Za-z_"
_HEX = "[0-9A-Fa-f]"
_H4 = _HEX + "{1,4}"
_START = f"(^|[^{_WORD}])"  # captured boundary before a token (\1)
_END = f"([^{_WORD}]|$)"  # captured boundary after it (\2)
_MIXED_HEX = f"{_HEX}*(?:[0-9]{_HEX}*[A-Fa-f]|[A-Fa-f]{_HEX}*[0-9]){_HEX}*"


@dataclass(frozen=True)
class Step:
    pattern: str
    replacement: str
    passes: int  # 2 for patterns with captured boundaries (see the module docstring)
    # LIKE patterns on the cause as recorded, one of which holds whenever the step can
    # match: the step is skipped otherwise (the regular expressions are the cost). Exact,
    # as no step adds the characters a gate looks for (tests/test_failures.py checks the
    # result against the steps without gates).
    gate: tuple[str, ...] = ()


_IPV6 = (
    f"(?:{_H4}(?::{_H4}){{7}}|(?:{_H4}:){{1,7}}:(?:{_H4}(?::{_H4}){{0,6}})?"
    f"|::{_H4}(?::{_H4}){{0,6}})"
)

# In this order: addresses first (the gated steps, on the cause as recorded), then a UUID
# or a timestamp (made of numbers and hex words). Durations are Go's (`1h2m3.5s`, `250ms`).
# A number may be dotted (`3.5`, a version `v0.14.1`); digits glued to letters are part of
# a name (`sda1`, `x509`, `ipv4`) and stay, unless the word is made of hex digits only and
# has a letter (`1a2b3c4d`). Hex words and numbers are one placeholder, `<n>`: a hash or
# a checksum is digits only often enough (2.3 % of 8-digit ones) that two placeholders
# would split one cause into two groups.
SIGNATURE_STEPS: tuple[Step, ...] = (
    Step(  # IPv6: eight groups, or fewer around `::`; a zone (`%eth0`), brackets (`[::1]:22`)
        f"(^|[^{_WORD}:.\\[])\\[?{_IPV6}(?:%[0-9A-Za-z]+)?\\]?{_END}",
        "\\1<ip>\\2",
        2,
        gate=("%::%", "%:%:%:%:%:%:%:%"),
    ),
    Step(
        f"(^|[^{_WORD}.])[0-9]{{1,3}}(?:\\.[0-9]{{1,3}}){{3}}{_END}",
        "\\1<ip>\\2",
        2,
        gate=("%.%.%.%",),
    ),
    Step(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}", "<uuid>", 1),
    Step(
        "[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\\.[0-9]+)?)?"
        "(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?",
        "<time>",
        1,
    ),
    Step(f"{_START}(?:0[xX]{_HEX}+|{_MIXED_HEX}){_END}", "\\1<n>\\2", 2),
    Step(f"{_START}(?:[0-9]+(?:\\.[0-9]+)?(?:ns|us|µs|μs|ms|s|m|h))+{_END}", "\\1<duration>\\2", 2),
    Step(f"{_START}(?:[vV]?[0-9]+(?:\\.[0-9]+)+|[0-9]+){_END}", "\\1<n>\\2", 2),
)

DIGEST_LENGTH = 12  # hex digits of md5(signature): a group's ID


def _literal(text: str) -> str:
    """A constant of this module as an SQL string literal (the pool sets
    standard_conforming_strings: backslashes are plain characters)."""
    return "'" + text.replace("'", "''") + "'"


def signature_sql(column: str) -> str:
    """The SQL expression of the signature of `column` (a column: gates repeat it)."""
    expr = column
    for step in SIGNATURE_STEPS:
        replaced = expr
        for _ in range(step.passes):
            replaced = (
                f"regexp_replace({replaced}, {_literal(step.pattern)},"
                f" {_literal(step.replacement)}, 'g')"
            )
        if step.gate:
            can_match = " OR ".join(f"{column} LIKE {_literal(g)}" for g in step.gate)
            replaced = f"CASE WHEN {can_match} THEN {replaced} ELSE {expr} END"
        expr = replaced
    return expr


def digest_sql(signature_expr: str) -> str:
    return f"substr(md5({signature_expr}), 1, {DIGEST_LENGTH})"


# --- windows and group IDs --------------------------------------------------------------

MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=30)
DEFAULT_WINDOW = timedelta(hours=24)
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_FAILURE_ID = re.compile(
    rf"(backoff|history-(?P<window>[1-9][0-9]{{0,5}}[mhd]))-(?P<digest>[0-9a-f]{{{DIGEST_LENGTH}}})"
)
FAILURE_ID_PATTERN = _FAILURE_ID.pattern  # for the query parameter's validation


def parse_window(text: str) -> timedelta:
    """`30m`, `1h`, `24h`, `7d`... between MIN_WINDOW and MAX_WINDOW; ValueError otherwise."""
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text[:40]!r} is not a window: a whole number of minutes, hours or days,"
            " such as 30m, 6h, 24h or 7d"
        )
    window = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValueError(
            f"the window must be between {window_text(MIN_WINDOW)} and {window_text(MAX_WINDOW)}"
        )
    return window


def window_text(window: timedelta) -> str:
    """The canonical spelling of a window: whole days from 2 days, else hours, else minutes."""
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


@dataclass(frozen=True)
class FailureId:
    source: str  # backoff | history
    digest: str
    window: timedelta | None = None  # history only

    def __str__(self) -> str:
        if self.window is None:
            return f"{self.source}-{self.digest}"
        return f"{self.source}-{window_text(self.window)}-{self.digest}"


def parse_failure_id(text: str) -> FailureId:
    """A group ID as `failure=` gives it; ValueError for anything else."""
    match = _FAILURE_ID.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text[:60]!r} is not a failure group ID (backoff-<digest> or"
            " history-<window>-<digest>, as /failures links them)"
        )
    if match["window"] is None:
        return FailureId("backoff", match["digest"])
    return FailureId("history", match["digest"], parse_window(match["window"]))


# --- statements -------------------------------------------------------------------------

MAX_GROUPS = 200  # per source, the largest first; the page says how many more there are


class MachineIds(tuple):
    """A group's machine IDs, bound as one uuid[] parameter of the list's statement; hashed
    once (the list keys its shared counts by its parameters)."""

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash = tuple.__hash__(self)
            return self._hash


@dataclass(frozen=True)
class Group:
    signature: str
    digest: str
    machines: int
    events: int
    processes: list[str]
    first_seen: Any  # timestamps as the document has them (app/pages decodes them)
    last_seen: Any
    example: str
    deleted: int  # machines of the group no longer in the BMDB (history outlives them)
    machine_ids: MachineIds


@dataclass(frozen=True)
class FailureGroups:
    now: Any  # the statement's now()
    events: int  # failures (backoffs) read, in every group
    machines: int  # distinct machines they happened on
    total_groups: int  # groups before MAX_GROUPS
    groups: list[Group]

    def group(self, digest: str) -> Group | None:
        return next((g for g in self.groups if g.digest == digest), None)


# Both sources give `f`: one row per cause, machine and process with its events and times.
# Each distinct cause is normalized once; groups are then counted per signature, with
# their machines (`per_machine`) and processes (`p`) aggregated separately, never with
# DISTINCT inside json_agg.
def _groups_sql(limit: int) -> str:
    return f"""
, s AS (
  SELECT c.sig, f.* FROM f
  JOIN (SELECT d.cause, {signature_sql("d.cause")} AS sig
        FROM (SELECT DISTINCT cause FROM f) d OFFSET 0) c  -- fenced: once per distinct cause
    ON c.cause = f.cause
), per_machine AS (
  SELECT s.sig, s.machine_id, sum(s.events) AS events, min(s.first_seen) AS first_seen,
         max(s.last_seen) AS last_seen, min(s.cause) AS example,
         NOT EXISTS (SELECT 1 FROM machines m WHERE m.machine_id = s.machine_id) AS deleted
  FROM s GROUP BY s.sig, s.machine_id
), g AS (
  SELECT sig, count(*) AS machines, sum(events) AS events, min(first_seen) AS first_seen,
         max(last_seen) AS last_seen, min(example) AS example,
         count(*) FILTER (WHERE deleted) AS deleted, json_agg(machine_id) AS ids,
         count(*) OVER () AS groups
  FROM per_machine GROUP BY sig
  ORDER BY machines DESC, events DESC, sig LIMIT {limit}
), p AS (
  SELECT sig, json_agg(process ORDER BY process) AS processes
  FROM (SELECT DISTINCT sig, process FROM s) sp GROUP BY sig
)
SELECT json_build_object(
  'now', now(),
  'events', (SELECT coalesce(sum(events), 0) FROM f),
  'machines', (SELECT count(DISTINCT machine_id) FROM f),
  'groups', coalesce((SELECT json_agg(json_build_array(g.sig, {digest_sql("g.sig")}, g.machines,
                        g.events, p.processes, g.first_seen, g.last_seen, g.example, g.groups,
                        g.deleted, g.ids) ORDER BY g.machines DESC, g.events DESC, g.sig)
                      FROM g JOIN p ON p.sig = g.sig), '[]'::json)) AS doc"""


# Active backoffs: a backoff's failure happened at `until - last_interval_seconds`
# (unknown for rows from before exponential backoff, which have no interval, and for
# intervals no timestamp can be that far before `until`: subtracting 2^62 seconds fails
# the statement, "interval out of range"; 10^11 s, 3,000 years, stays after 4713 BC).
_STARTED = (
    "CASE WHEN b.last_interval_seconds BETWEEN 0 AND 100000000000"
    " THEN b.until - b.last_interval_seconds * interval '1 second' END"
)


def backoff_groups_sql(limit: int = MAX_GROUPS) -> str:
    """The statement of the active backoffs' groups, the `limit` largest."""
    return (
        f"""WITH f AS (
  SELECT b.cause, b.machine_id, b.process::text AS process, 1 AS events,
         {_STARTED} AS first_seen, {_STARTED} AS last_seen
  FROM work_backoff b WHERE b.until > now()
)"""
        + _groups_sql(limit)
    )


_BACKOFF_SQL = backoff_groups_sql()

_HISTORY_SQL = (
    """WITH f AS (
  SELECT coalesce(h.failed_cause, '') AS cause, h.machine_id, h.process::text AS process,
         count(*) AS events, min(h."timestamp") AS first_seen, max(h."timestamp") AS last_seen
  FROM work_history h
  WHERE h.event = 'Failed' AND h."timestamp" > now() - $1::interval
  GROUP BY 1, 2, 3
)"""
    + _groups_sql(MAX_GROUPS)
)


def groups_from(doc: dict[str, Any]) -> FailureGroups:
    groups = [
        Group(sig, digest, machines, events, processes, first, last, example, deleted,
              MachineIds(ids))
        for sig, digest, machines, events, processes, first, last, example, _, deleted, ids
        in doc["groups"]
    ]  # fmt: skip
    total = doc["groups"][0][8] if doc["groups"] else 0
    return FailureGroups(doc["now"], int(doc["events"]), doc["machines"], total, groups)


async def backoff_groups(reader: Reader) -> FailureGroups:
    """Active backoffs grouped by the signature of their cause: one statement on
    work_backoff (a row per machine and process at most), read live."""
    return groups_from(reader.parse(await reader.fetchval(
        _BACKOFF_SQL, purpose="failure groups of active backoffs, shared with other views"
    )))  # fmt: skip


async def history_groups(reader: Reader, window: timedelta) -> FailureGroups:
    """`Failed` events of the last `window` grouped by the signature of their cause. One
    statement, a scan of work_history: run it through app/bmdb/history_reads.py."""
    return groups_from(reader.parse(await reader.fetchval(
        _HISTORY_SQL, window, history=True,
        purpose="failure groups of work history, shared with other views",
    )))  # fmt: skip
