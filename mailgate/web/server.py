"""The web desk's server: the team's pages and the customers' status pages, on ``[web]``.

Served by aiohttp.web on the daemon's event loop (decision 0016), beside the monitoring
endpoint: sign-in (``web.signin``), the team's pages (``web.pages``), the customers'
pages (``web.customer``) and the desk's own script and style sheet (``/static/``; no
CDN, no build step). Every response carries the security headers of ``web.site``; a
team page asked for without a session sends a browser to the sign-in page (GET) or
answers 403 (anything else). See docs/decisions/0020-web-desk.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from mailgate.app import App
from mailgate.ops.http import Served
from mailgate.outbound.render import SHIPPED_TEMPLATES
from mailgate.web import admin, customer, pages, signin
from mailgate.web.site import HEADERS, SignInNeeded, Site

log = structlog.get_logger("mailgate.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; no session for a team page: sign in first."""
    try:
        response = await handler(request)
    except SignInNeeded:
        refused: web.HTTPException = (
            web.HTTPSeeOther("/sign-in")
            if request.method in ("GET", "HEAD")
            else web.HTTPForbidden(text="sign in first")
        )
        _secured(refused)
        raise refused from None
    except web.HTTPException as exc:
        _secured(exc)
        raise
    _secured(response)
    return response


def _secured(response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


class WebDesk(Served):
    """Serves the web desk of ``app`` until closed."""

    section = "[web]"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.site = Site.for_app(app)

    def application(self) -> web.Application:
        application = web.Application(middlewares=[_guard], client_max_size=2 * 1024 * 1024)
        application.add_routes(signin.routes(self.site))
        application.add_routes(pages.routes(self.site))
        application.add_routes(customer.routes(self.site))
        application.add_routes(admin.routes(self.site))
        application.router.add_static("/static/", SHIPPED_TEMPLATES / "web" / "static")
        return application
