"""The probe's report for a ticket: Markdown or HTML from one Jinja2 template set
(``templates/``), the text for a terminal, both from the result dict only."""

from __future__ import annotations

from pathlib import Path

import jinja2

# lab.report's way (lab/report/render.py), without importing it (a layer above): HTML is
# autoescaped, Markdown is not; undefined is lenient because a measurement that never
# happened (no answer, no credentials) leaves its keys out
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("lab.probe", "templates"),
                          autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(result: dict, fmt: str = "md") -> str:
    """``fmt``: md, html or text."""
    text = _ENV.get_template("probe.text.j2").render(r=result, m=result["measurements"])
    if fmt == "text":
        return text
    return _ENV.get_template(f"probe.{fmt}.j2").render(r=result, m=result["measurements"], text=text)


def write(result: dict, path: str) -> Path:
    p = Path(path)
    fmt = "html" if p.suffix.lower() in (".html", ".htm") else "md"
    p.write_text(render(result, fmt))
    return p
