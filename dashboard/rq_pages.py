"""rq-dashboard's pages rebuilt at start-up so that no request value can reach a script context.

Upstream renders every page's JavaScript inline, with Jinja expressions in it (some unescaped:
`$(this).val('{{ queue.name }}')` in scripts/jobs.js), so a queue name in the URL became code,
and a CSP that hashed the response's inline scripts allowed it (issue 11, point 1). Here:

- each page's script (inline_js.html + dashboard.js + the page's own script) is compiled once,
  when the process starts, into a fixed file served from `/dashboard/rq-scripts/<page>.js`;
  every Jinja expression in it becomes a read of `RQ_PAGE`, an object parsed from a
  `<script type="application/json">` data block (`tojson` escapes `<`, `>`, `&` and `'`, and a
  JSON block is never executed). So the rq-dashboard pages have no executable inline script and
  the CSP allows only 'self' scripts (plus 'unsafe-eval' for Underscore's templates);
- Underscore `<%= %>` interpolations become escaping `<%- %>` (upstream issue 526);
- if an upgrade of rq-dashboard changes what is rewritten, start-up fails (`RqPagesError`)
  instead of serving a page whose script could carry request data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import rq_dashboard.web
from flask import Blueprint, Response, abort, request
from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound

CONFIG_ELEMENT_ID = "rq-page-config"
SCRIPT_URL = "/dashboard/rq-scripts/<page>.js"

# Every value upstream's scripts read from the template context: name in Jinja -> key in RQ_PAGE.
PAGE_VALUES = {
    "poll_interval": "poll_interval",
    "rq_url_prefix": "rq_url_prefix",
    "current_instance": "current_instance",
    "id": "id",
    "queue.name": "queue_name",
    "registry_name": "registry_name",
    "per_page": "per_page",
    "order": "order",
    "page": "page",
}

_JINJA_EXPRESSION = re.compile(r"""(['"]?)\{\{-?\s*([A-Za-z_][\w.]*)\s*((?:\|\s*\w+\s*)*)-?\}\}\1""")
_ALLOWED_FILTERS = {"tojson", "safe"}
_INCLUDE = re.compile(r"""\{%-?\s*include\s+["']rq_dashboard/([\w/]+\.(?:js|html))["']\s*(?:with context\s*)?-?%\}""")
_PAGE_SCRIPT_BLOCK = re.compile(
    r"""\{%\s*block content_scripts\s*%\}\s*\{%\s*include\s+["']rq_dashboard/scripts/(\w+)\.js["']\s*%\}\s*"""
    r"""\{%\s*endblock\s*%\}"""
)
# A viewer's pages hide upstream's action buttons (the actions answer 403 for a viewer anyway).
_VIEWER_STYLES = (
    "{% if dashboard_role == 'viewer' %}"
    "<link rel=\"stylesheet\" href=\"{{ url_for('dashboard.static', filename='rq-viewer.css') }}\">"
    "{% endif %}"
)
_BASE_INLINE_SCRIPT = re.compile(
    r"""<script type="text/javascript">\s*\{%\s*include\s+["']rq_dashboard/inline_js\.html["']\s*%\}\s*"""
    r"""\{%\s*block content_scripts\s*%\}\{%\s*endblock\s*%\}\s*</script>"""
)
_JQUERY_ESCAPE = re.compile(r"<%=\s*\$\('<div/>'\)\.text\((.+?)\)\.html\(\)\s*%>")
_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_NON_JS_TYPES = ("text/template", "application/json")

# The page's values as one JSON block; names absent on a page are null.
_CONFIG_BLOCK = (
    '<script type="application/json" id="' + CONFIG_ELEMENT_ID + '">{{ {'
    '"poll_interval": poll_interval, "rq_url_prefix": rq_url_prefix, "current_instance": current_instance, '
    '"id": id|default(none), "queue_name": queue.name if queue is defined else none, '
    '"registry_name": registry_name|default(none), "per_page": per_page|default(none), '
    '"order": order|default(none), "page": page|default(none)}|tojson }}</script>\n'
    "        <script src=\"{{ url_for('rq_dashboard_escaped.page_script', page=self.content_scripts()|trim) }}\"></script>"
)
_PRELUDE = (
    "var RQ_PAGE = JSON.parse(document.getElementById("
    + repr(CONFIG_ELEMENT_ID).replace("'", '"')
    + ").textContent);\n"
)


class RqPagesError(RuntimeError):
    """The installed rq-dashboard's templates are not what this module knows how to make safe."""


@dataclass(frozen=True)
class PageScript:
    body: bytes
    etag: str


def _upstream_loader() -> FileSystemLoader:
    return FileSystemLoader(rq_dashboard.web.blueprint.jinja_loader.searchpath)


def _raw(loader: FileSystemLoader, name: str) -> str:
    return loader.get_source(Environment(), f"rq_dashboard/{name}")[0]


def _script_from_template(loader: FileSystemLoader, name: str, seen: tuple[str, ...] = ()) -> str:
    """The JavaScript of `name` with includes inlined and every expression a read of RQ_PAGE."""
    if name in seen:
        raise RqPagesError(f"recursive include of {name}")
    source = _INCLUDE.sub(lambda m: _script_from_template(loader, m.group(1), (*seen, name)), _raw(loader, name))

    def value(match: re.Match) -> str:
        expression, filters = match.group(2), [f.strip() for f in match.group(3).split("|") if f.strip()]
        if expression not in PAGE_VALUES or not set(filters) <= _ALLOWED_FILTERS:
            raise RqPagesError(f"{name}: unknown template expression {match.group(0)!r}")
        return f'RQ_PAGE["{PAGE_VALUES[expression]}"]'

    script = _JINJA_EXPRESSION.sub(value, source)
    for marker in ("{{", "{%", "{#"):
        if marker in script:
            raise RqPagesError(f"{name}: template syntax left in a script ({marker})")
    return script


def build_page_scripts(loader: FileSystemLoader | None = None) -> dict[str, PageScript]:
    """One fixed script per page that has one, from the installed templates (done at start-up)."""
    loader = loader or _upstream_loader()
    common = _script_from_template(loader, "inline_js.html")
    pages = {}
    for template in loader.list_templates():
        if not template.startswith("rq_dashboard/") or not template.endswith(".html"):
            continue
        for page in _PAGE_SCRIPT_BLOCK.findall(_raw(loader, template.removeprefix("rq_dashboard/"))):
            body = (_PRELUDE + common + "\n" + _script_from_template(loader, f"scripts/{page}.js") + "\n").encode()
            pages[page] = PageScript(body=body, etag=hashlib.sha256(body).hexdigest()[:32])
    if not pages:
        raise RqPagesError("no page scripts found in rq-dashboard's templates")
    return pages


def rewrite_template(name: str, source: str, pages: dict[str, PageScript]) -> str:
    """A template of rq-dashboard made safe; raises if an executable inline script would remain."""
    source = _JQUERY_ESCAPE.sub(r"<%- \1 %>", source).replace("<%=", "<%-")
    source = source.replace("url_for('static',", "url_for('rq_dashboard.static',")
    if name == "rq_dashboard/base.html":
        source, count = _BASE_INLINE_SCRIPT.subn(lambda _: _CONFIG_BLOCK, source)
        if count != 1:
            raise RqPagesError("base.html: the inline script block was not found")
        source, count = re.subn(r"</head>", lambda _: _VIEWER_STYLES + "</head>", source, count=1)
        if count != 1:
            raise RqPagesError("base.html: no </head> to link the viewer's stylesheet before")
    if name.endswith(".html"):

        def page_name(match: re.Match) -> str:
            if match.group(1) not in pages:
                raise RqPagesError(f"{name}: no compiled script for page {match.group(1)}")
            return "{% block content_scripts %}" + match.group(1) + "{% endblock %}"

        source = _PAGE_SCRIPT_BLOCK.sub(page_name, source)
        for attrs in _SCRIPT_TAG.findall(source):
            if "src=" not in attrs and not any(kind in attrs for kind in _NON_JS_TYPES):
                raise RqPagesError(f"{name}: an executable inline <script{attrs}> would remain")
    return source


class EscapingRqTemplates(BaseLoader):
    """rq-dashboard's templates, rewritten by `rewrite_template` (all of them checked at start-up)."""

    def __init__(self, pages: dict[str, PageScript]) -> None:
        self._upstream = _upstream_loader()
        self._pages = pages
        for template in self.list_templates():  # fail at import, not on the first request
            self.get_source(Environment(), template)

    def get_source(self, environment: Environment, template: str):
        if not template.startswith("rq_dashboard/"):
            raise TemplateNotFound(template)
        source, filename, uptodate = self._upstream.get_source(environment, template)
        return rewrite_template(template, source, self._pages), filename, uptodate

    def list_templates(self) -> list[str]:
        return [t for t in self._upstream.list_templates() if t.startswith("rq_dashboard/")]


PAGE_SCRIPTS = build_page_scripts()
_LOADER = EscapingRqTemplates(PAGE_SCRIPTS)


class _TemplateOverrides(Blueprint):
    """Registered before rq-dashboard's blueprint: Flask searches blueprint template loaders in
    registration order, so the rewritten templates win, per app, without patching the package.
    It also serves the compiled page scripts."""

    @property
    def jinja_loader(self) -> BaseLoader:
        return _LOADER


blueprint = _TemplateOverrides("rq_dashboard_escaped", __name__)


@blueprint.get(SCRIPT_URL)
def page_script(page: str) -> Response:
    script = PAGE_SCRIPTS.get(page)
    if script is None:
        abort(404)
    response = Response(script.body, mimetype="text/javascript")
    response.set_etag(script.etag)
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)
