"""The viewer's pages: each route asks queries.py for its rows and renders a template.

Server-rendered HTML, no script: everything the pages show is text from the store, escaped by
Jinja's autoescape, and the Content-Security-Policy forbids scripts and any other origin.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from visit_assets.lib.llm.types import sniff_media_type

from . import queries
from .compare import image_versions_page, versions_page
from .reader import Reader

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data
# No scripts at all, nothing from another origin; inline styles only (the pages carry their CSS).
CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer")]
BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324", "#808000")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return Jinja2Templates(env=env)


def _reader(request: Request) -> Reader:
    return request.app.state.reader


def _render(request: Request, name: str, **context) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context)


def overview(request: Request) -> Response:
    """Each dataset: versions, rows per asset, rejects by stage and reason, prompt types."""
    reader = _reader(request)
    with contextlib.closing(reader.db()) as db:
        names = queries.datasets(db)
        chosen = [n for n in names if n == request.query_params.get("dataset")] or names
        sections = [{"name": n, "versions": queries.dataset_versions(db, n), "assets": queries.asset_rows(db, n),
                     "rejects": queries.rejects(db, n), "prompt_types": queries.prompt_types(db, n),
                     "images": queries.images(db, n)} for n in chosen]
    return _render(request, "dataset.html", datasets=names, sections=sections, store=str(reader.store))


def pixel_boxes(image: dict) -> list[dict]:
    """Boxes are stored as fractions of the image; the overlay draws them in image pixels."""
    width, height = image.get("width"), image.get("height")
    if not width or not height:
        return []
    return [{"label": b["label"], "x": b["x1"] * width, "y": b["y1"] * height, "w": (b["x2"] - b["x1"]) * width,
             "h": (b["y2"] - b["y1"]) * height, "colour": BOX_COLOURS[i % len(BOX_COLOURS)]}
            for i, b in enumerate(image.get("boxes") or [])]


def image_page(request: Request) -> Response:
    dataset, image_id = request.path_params["dataset"], request.path_params["image_id"]
    with contextlib.closing(_reader(request).db()) as db:
        image = queries.image(db, dataset, image_id)
        if image is None:
            raise HTTPException(404, f"no image {image_id} in dataset {dataset}")
        conversations = queries.image_conversations(db, dataset, image_id)
        facts, rejects = queries.image_facts(db, dataset, image_id), queries.image_rejects(db, dataset, image_id)
        compare = queries.version_count(db, dataset) > 1  # else there is no other version to show
    for c in conversations:
        c["llava"] = queries.llava_preview(c) if c["turns"] else None
    return _render(request, "image.html", image=image, boxes=pixel_boxes(image), facts=facts, rejects=rejects,
                   conversations=conversations, compare=compare)


def image_file(request: Request) -> Response:
    """Only an image the catalog registered, from its dataset's image folder; 404 for anything else."""
    dataset, image_id = request.path_params["dataset"], request.path_params["image_id"]
    reader = _reader(request)
    with contextlib.closing(reader.db()) as db:
        key = queries.image_key(db, dataset, image_id)
    try:
        path = reader.image_file(dataset, key) if key else None
    except FileNotFoundError:
        path = None
    if path is None:
        raise HTTPException(404, "no such image")
    headers = {"Cache-Control": "private, max-age=300"}
    if isinstance(path, bytes):  # a shard member, read in place
        return Response(path, media_type=sniff_media_type(path[:16]) or "application/octet-stream", headers=headers)
    return FileResponse(path, headers=headers)


def _page(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", 1)))
    except ValueError:
        return 1


def browse(request: Request) -> Response:
    filters = {k: request.query_params.get(k, "").strip() for k in queries.FILTERS}
    with contextlib.closing(_reader(request).db()) as db:
        result = queries.conversations(db, filters, _page(request))
        choices = queries.filter_choices(db, filters["dataset"] or None)
    kept = {k: v for k, v in filters.items() if v}
    return _render(request, "browse.html", filters=filters, choices=choices, result=result,
                   page_url=lambda n: "/browse?" + urlencode({**kept, "page": n}))


def export_preview(request: Request) -> Response:
    """One conversation's LLaVA JSON, byte for byte as the exporter writes it (a list of one item)."""
    dataset, conversation_id = request.path_params["dataset"], request.path_params["conversation_id"]
    with contextlib.closing(_reader(request).db()) as db:
        found = queries.conversation(db, dataset, conversation_id)
    if not found or not found["turns"]:
        raise HTTPException(404, "no such conversation")
    return Response(queries.llava_preview(found), media_type="application/json")


class SecurityHeaders:
    """Adds HEADERS to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(store: Path, datasets: Path) -> Starlette:
    """The viewer over a store and its datasets folder (images are read from there)."""
    reader = Reader(store, datasets)
    reader.prepare()  # the browse tables: a few seconds at 118k images, once, rather than on the first browse

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        reader.close()

    routes = [Route("/", overview), Route("/browse", browse), Route("/image/{dataset}/{image_id}", image_page),
              Route("/image-file/{dataset}/{image_id}", image_file),
              Route("/conversation/{dataset}/{conversation_id}.json", export_preview),
              Route("/versions/{dataset}", versions_page),
              Route("/versions/{dataset}/image/{image_id}", image_versions_page)]
    # Loopback names only: a web page elsewhere cannot reach this server through DNS rebinding.
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.reader, app.state.templates = reader, _templates()
    return app
