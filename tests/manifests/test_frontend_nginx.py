"""The alert page's nginx (services/frontend/nginx): the upload limit matches the control service's, and the
page is served with headers that keep it from being framed, sniffed or made to load other origins' code.

nginx itself is not started here (Debian's package starts a system nginx on port 80 when installed); the
frontend image runs this file, and e2e-kind.yml checks the headers and the 413 through it on kind. What is
checked here: the directives, and that the page needs nothing its Content-Security-Policy forbids (inline
scripts or styles, eval)."""

from __future__ import annotations

import re

from polyp_control.gate import MULTIPART_OVERHEAD
from polyp_control.settings import Settings

TEMPLATE = "services/frontend/nginx/default.conf.template"
UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _directives(repo_root, name: str) -> list[str]:
    text = (repo_root / TEMPLATE).read_text()
    return re.findall(rf"^\s*{name}\s+(.+?);\s*$", text, re.MULTILINE)


def test_nginx_takes_what_predict_takes_and_no_more_than_a_megabyte_beyond(repo_root):
    [size] = _directives(repo_root, "client_max_body_size")
    limit = int(size[:-1]) * UNITS[size[-1].lower()]
    needed = Settings().max_upload_bytes + MULTIPART_OVERHEAD
    assert needed <= limit <= needed + UNITS["m"], (size, needed)


def test_the_page_is_sent_with_security_headers_on_every_answer(repo_root):
    headers = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in _directives(repo_root, "add_header")}
    assert all(value.endswith(" always") for value in headers.values()), "errors (4xx/5xx) need the headers too"
    assert headers["X-Frame-Options"].startswith("DENY") and headers["X-Content-Type-Options"].startswith("nosniff")
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'"):
        assert directive in csp, directive
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_the_page_needs_nothing_its_policy_forbids(repo_root):
    static = repo_root / "services" / "frontend" / "static"
    html = (static / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], "inline script"
    assert " style=" not in html and "<style" not in html and not re.search(r"\son[a-z]+=", html), "inline style or handler"
    for script in static.glob("*.js"):
        code = script.read_text()
        assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"](style|on)", code), script.name
