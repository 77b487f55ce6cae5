"""Jinja2 templates from ``templates/``: prompts, emails and (later) web pages.

HTML templates autoescape, so customer text can never inject markup; text templates don't.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html", "html.j2"]), trim_blocks=True,
                       lstrip_blocks=True, keep_trailing_newline=False)


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
