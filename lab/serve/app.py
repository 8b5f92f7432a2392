"""The web app: the page, its JSON API and its event stream, over a ``LiveLab`` (live.py).

Security (the server runs as root and changes firewalls; docs/serve.md):

- every request (page, API, events, downloads) carries the token the server printed, as
  ``?token=`` or the ``X-Icelab-Token`` header; a missing or wrong one gets 403 before any
  handler runs;
- only POST changes anything, and a POST must be same-origin: an ``Origin`` other than the
  server's own or a ``Sec-Fetch-Site`` other than same-origin/none is refused with 403, and
  its body must be JSON (a cross-site form cannot send that without a preflight, which is
  never answered);
- every body is checked by a pydantic model (no field it does not know, names looked up in
  the lab): a bad one gets 400 and nothing changes;
- no endpoint runs a command it is given: each one calls one of the lab's mechanisms.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lab.core.control import describe
from lab.core.errors import InputError, LabError, UsageError
from lab.model.firewall import FwRule
from lab.services.turn.faults import FaultSet

from .live import Conflict, NotFound

#: counters pushed to the page this often (the issue asks for at least twice a second)
TICK_S = 0.4
TOKEN_HEADER = "x-icelab-token"
STATIC = resources.files("lab.serve") / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
#: what the page may load and where it may connect: itself only (no CDN, no inline script)
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

#: a scenario's report (lab/report/templates): its own inline styles, its pictures from here
REPORT_FILES = {"report.html": "text/html", "timeline.svg": "image/svg+xml", "topology.svg": "image/svg+xml",
                "report.md": "text/markdown", "result.json": "application/json"}
REPORT_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"


# -- request bodies ------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleToggle(Body):
    node: str
    number: int = Field(ge=1)
    enabled: bool


class RuleAdd(Body):
    node: str
    rule: FwRule


class RuleDelete(Body):
    node: str
    number: int = Field(ge=1)


class LinkSet(Body):
    a: str
    b: str
    direction: Literal["a2b", "b2a", "both"] = "both"
    # written as in a topology file ("120ms", "2%", "1mbit"); lab.net.shaping checks the values
    delay: str | None = Field(None, max_length=32)
    jitter: str | None = Field(None, max_length=32)
    loss: str | None = Field(None, max_length=32)
    rate: str | None = Field(None, max_length=32)
    clear: bool = False


class TurnControl(Body):
    node: str
    verb: Literal["stop", "start", "restart", "faults", "expire_permissions"]
    faults: FaultSet | None = None


class NatFlush(Body):
    node: str


class CallPlace(Body):
    agent: str
    engine: Literal["emulated", "chromium"] = "emulated"
    talk: float = Field(3.0, ge=0.5, le=60)


class StepPlay(Body):
    step: int = Field(ge=0)


class TimelinePlay(Body):
    verb: Literal["play", "pause"]


# -- events ------------------------------------------------------------------------------------


class Hub:
    """Fan-out of events to every page watching: each subscriber an asyncio queue. ``publish``
    may be called from any thread (the lab's worker threads, the call readers)."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue] = set()

    def publish(self, event: dict) -> None:
        if self.loop is None or not self.queues:
            return
        try:
            self.loop.call_soon_threadsafe(self._put, event)
        except RuntimeError:        # the loop closed: the server is stopping
            pass

    def _put(self, event: dict) -> None:
        for q in list(self.queues):
            if q.qsize() < 200:     # a page that stopped reading is not allowed to grow memory
                q.put_nowait(event)


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n".encode()


# -- the app -------------------------------------------------------------------------------------


def create_app(lab, token: str, hub: Hub | None = None, tick: float = TICK_S) -> Starlette:
    """``lab``: a live.LiveLab (or a fake with its methods); ``token``: what every request
    must carry."""
    hub = hub or Hub()

    async def ticker():
        while True:
            await asyncio.sleep(tick)
            if hub.queues:
                try:
                    hub.publish(dict(await run_in_threadpool(lab.counters), type="counters"))
                except Exception as exc:    # noqa: BLE001 - one bad read must not end the updates for good
                    hub.publish({"type": "log", "text": f"counters: {exc}"})

    @asynccontextmanager
    async def lifespan(app):
        hub.loop = asyncio.get_running_loop()
        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()

    async def page(request: Request) -> Response:
        # the assets need the token too; the guard has checked it, and it is URL-safe base64
        html = (STATIC / "index.html").read_text().replace("?token=TOKEN", f"?token={token}")
        return Response(html, media_type="text/html", headers=HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, 404)
        return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=HEADERS)

    async def topology(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(lab.topology), headers=HEADERS)

    async def counters(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(lab.counters), headers=HEADERS)

    async def node(request: Request) -> Response:
        return await _call(lab.node_info, request.path_params["name"])

    async def links(request: Request) -> Response:
        return await _call(lab.links)

    async def calls(request: Request) -> Response:
        return JSONResponse(list(lab.calls.values()), headers=HEADERS)

    async def events(request: Request) -> Response:
        q: asyncio.Queue = asyncio.Queue()
        hub.queues.add(q)

        async def stream():
            try:
                yield sse({"type": "hello", "t": time.time()})
                while True:
                    try:
                        event = await asyncio.wait_for(q.get(), 15)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield sse(event)
            finally:
                hub.queues.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers=dict(HEADERS, **{"X-Accel-Buffering": "no"}))

    async def pcap(request: Request) -> Response:
        node, itf = request.path_params["node"], request.path_params["interface"]
        try:
            path = lab.pcap(node, itf)
        except LabError as exc:
            return _error(exc)
        return FileResponse(path, media_type="application/vnd.tcpdump.pcap", filename=f"{lab.topo.name}-{node}-{itf}.pcap",
                            headers=HEADERS)

    async def report(request: Request) -> Response:
        """The scenario's report as ``icelab run`` writes it; its pictures by name, with the token."""
        name = request.path_params.get("name", "report.html")
        if name not in REPORT_FILES:
            return JSONResponse({"error": "not found"}, 404, headers=HEADERS)
        try:
            path = lab.report().parent / name
        except LabError as exc:
            return _error(exc)
        headers = dict(HEADERS, **{"Content-Security-Policy": REPORT_CSP})
        if name == "report.html":
            html = path.read_text()
            for pic in ("timeline.svg", "topology.svg"):
                html = html.replace(f'src="{pic}"', f'src="report/{pic}?token={token}"')
            return Response(html, media_type="text/html", headers=headers)
        return FileResponse(path, media_type=REPORT_FILES[name], headers=headers)

    def control(model: type[Body], action):
        async def endpoint(request: Request) -> Response:
            try:
                body = model.model_validate_json(await request.body())
            except ValidationError as exc:
                return JSONResponse({"error": describe(exc)}, 400, headers=HEADERS)
            return await _call(action, body)
        return endpoint

    async def _call(fn, *args) -> Response:
        try:
            result = await run_in_threadpool(fn, *args)
        except LabError as exc:
            return _error(exc)
        return JSONResponse(result if isinstance(result, (dict, list)) else {"said": result}, headers=HEADERS)

    routes = [
        Route("/", page),
        Route("/static/{name}", asset),
        Route("/api/topology", topology),
        Route("/api/counters", counters),
        Route("/api/node/{name}", node),
        Route("/api/links", links),
        Route("/api/calls", calls),
        Route("/api/events", events),
        Route("/api/pcap/{node}/{interface}", pcap),
        Route("/api/report", report),
        Route("/api/report/{name}", report),
        Route("/api/rule/toggle", control(RuleToggle, lambda b: lab.rule_toggle(b.node, b.number, b.enabled)),
              methods=["POST"]),
        Route("/api/rule/add", control(RuleAdd, lambda b: lab.rule_add(b.node, b.rule.model_dump(exclude_none=True))),
              methods=["POST"]),
        Route("/api/rule/delete", control(RuleDelete, lambda b: lab.rule_delete(b.node, b.number)), methods=["POST"]),
        Route("/api/link", control(LinkSet, lambda b: lab.link_set(
            b.a, b.b, b.direction, {k: v for k in ("delay", "jitter", "loss", "rate") if (v := getattr(b, k)) is not None},
            b.clear)), methods=["POST"]),
        Route("/api/turn", control(TurnControl, lambda b: lab.turn(
            b.node, b.verb, b.faults.model_dump() if b.faults is not None else None)), methods=["POST"]),
        Route("/api/nat/flush", control(NatFlush, lambda b: lab.nat_flush(b.node)), methods=["POST"]),
        Route("/api/call", control(CallPlace, lambda b: {"id": lab.place_call(b.agent, b.engine, b.talk)}),
              methods=["POST"]),
        Route("/api/scenario/play", control(StepPlay, lambda b: lab.play_step(b.step)), methods=["POST"]),
        Route("/api/scenario/timeline", control(TimelinePlay, lambda b: lab.timeline(b.verb)), methods=["POST"]),
    ]
    return Guard(Starlette(routes=routes, lifespan=lifespan), token)


def _error(exc: LabError) -> Response:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else \
        400 if isinstance(exc, (UsageError, InputError)) else 500
    text = "; ".join(f"{p.path}: {p.message}" for p in exc.problems) if isinstance(exc, InputError) else str(exc)
    return JSONResponse({"error": text}, status, headers=HEADERS)


class Guard:
    """ASGI middleware in front of everything: the token, then the origin of a POST. A refused
    request never reaches a handler, so it cannot change anything."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = self.refusal(scope, headers)
        if why:
            return await JSONResponse({"error": why}, 403, headers=HEADERS)(scope, receive, send)
        return await self.app(scope, receive, send)

    def refusal(self, scope, headers: dict[str, str]) -> str | None:
        given = headers.get(TOKEN_HEADER) or (parse_qs(scope.get("query_string", b"").decode()).get("token") or [""])[0]
        if not secrets.compare_digest(given.encode(), self.token):
            return "missing or wrong token: open the address the server printed"
        if scope["method"] in ("GET", "HEAD"):
            return None
        if scope["method"] != "POST":
            return "only GET and POST"
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope.get('scheme', 'http')}://{headers.get('host', '')}":
            return f"cross-origin request refused (Origin {origin})"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site {site})"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "a change must be sent as application/json"
        return None
