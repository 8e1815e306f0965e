"""The Jinja environment every page is drawn with, built once when the app is built.

Everything a template may call is registered here, and nowhere else: the filters and
tests that turn data into what templates draw (times, values), the URL builders, and the
constants the value macros fold long values at, and the one cache of rendered HTML
(`fragment`, app/render/fragments.py). Templates live in templates/ (pages) and partials/
(fragments the pages include and htmx fetches).
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from app.bmdb import machine_states, tables
from app.bmdb.columns import PgSpecial
from app.render import formatting, urls, values
from app.render.fragments import Fragments, fingerprint
from app.render.protobuf_names import ProtoNames
from app.render.tag_hints import detail_order, tag_hint

APP_DIR = Path(__file__).resolve().parents[1]  # app/: templates/, partials/, static/


def build_environment(proto_names: ProtoNames | None) -> jinja2.Environment:
    """The environment of one app: `proto_names` decodes its protobuf columns by name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(APP_DIR),
        autoescape=True,  # everything from the database is HTML-escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(formatting.FILTERS)
    env.filters.update(
        fingerprint=fingerprint,
        value_kind=values.value_kind,
        element_field=values.element_field,
        enum_element=values.enum_element,
        parse_array_literal=values.parse_array_literal,
        human_interval=values.human_interval,
        fold=values.fold,
        pretty_json=values.pretty_json,
        nbytes=values.nbytes,
        pb_reading=values.pb_reading,
        pb_lines=values.pb_lines,
        decode_bytes=lambda data, field: values.decode_bytes(bytes(data), field, proto_names),
    )
    env.tests["special"] = lambda value: isinstance(value, PgSpecial)
    env.globals.update(
        urls=urls,
        tables=tables,
        STATE_TABS=machine_states.TABS,
        STUCK_BLOCKERS=machine_states.BLOCKERS,
        blocker_label=dict(machine_states.BLOCKERS).__getitem__,
        tag_hint=tag_hint,
        detail_order=detail_order,
        TEXT_CUT=values.TEXT_CUT,
        TEXT_MAX_LINES=values.TEXT_MAX_LINES,
        JSON_CUT=values.JSON_CUT,
        JSON_MAX_LINES=values.JSON_MAX_LINES,
        HEX_CUT=values.HEX_CUT,
        HEX_FULL_MAX=values.HEX_FULL_MAX,
        PB_FOLD_LINES=values.PB_FOLD_LINES,
    )
    fragments = Fragments(env)
    env.globals.update(fragments=fragments, fragment=fragments.render)
    return env

