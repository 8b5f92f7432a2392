"""The reports' one template set (lab/report/templates/): a page is written once per format,
from the same sections; HTML is autoescaped, Markdown is not (it is read as text)."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(loader=PackageLoader("lab.report", "templates"),
                   autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=StrictUndefined)


def render(template: str, **context) -> str:
    return _env.get_template(template).render(**context)
