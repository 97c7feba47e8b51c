"""`/docs` offline: Swagger UI from files shipped in the package, under a strict Content-Security-Policy.

    install_docs(app)      # GET /docs (the page) and GET /docs/assets/<file> (Swagger UI, vendored)

FastAPI's own /docs page loads Swagger UI from a CDN (a blank page without the internet) and starts
it with an inline script (which a strict CSP forbids). This page loads the vendored copy
(`collector/swagger/`, see its VENDORED.md) and starts it from a static file, so it works offline and
runs no inline code. The assets are public like the page (a browser sends no token for them); the
API the page calls still needs one (the Authorize button takes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS = Path(__file__).with_name("swagger")
# name -> media type: the only files served (no path from the request reaches the filesystem)
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
ASSET_PREFIX = "/docs/assets/"

# The same policy the web UI's pages get: nothing but this origin's own files, no inline code, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
"""

# Starts Swagger UI on the app's own schema; a file, not an inline script (the CSP allows no inline code).
_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                               presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
});
"""


def install_docs(app: FastAPI) -> None:
    """Serve /docs with the vendored Swagger UI (the app must be made with docs_url=None)."""
    import html

    page = _PAGE.format(title=html.escape(app.title))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @app.get(ASSET_PREFIX + "{name}", include_in_schema=False)
    async def asset(name: str) -> Any:
        if name == "init.js":
            return Response(_INIT, media_type="text/javascript", headers=SECURITY_HEADERS)
        media = _FILES.get(name)
        if media is None:
            return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        return FileResponse(ASSETS / name, media_type=media, headers={**SECURITY_HEADERS, "Cache-Control": "max-age=86400"})
