"""Two dataset versions side by side: the whole dataset, or one image.

Both pages render what `lib/versions.py` computes (`diff_versions`, `image_changes`): the viewer
has no diff logic of its own, so it says what `visit-assets diff` and the export manifest say.
That is sql/version_diff.sql run over the store's data files (not the viewer's catalog, whose
plain views show current partitions only): "the rows as of a version" are found from every file.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from visit_assets.lib import versions

EXAMPLES = 20  # example items and images per asset and kind of change


def _render(request: Request, name: str, status_code: int = 200, **context) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status_code)


def _known(request: Request, dataset: str) -> list[dict]:
    """The dataset's versions, oldest first (as diff_versions orders them); 404 for a dataset the
    store does not have."""
    try:
        known = versions.dataset_versions(request.app.state.reader.store, dataset)
    except ValueError:  # a name that cannot be a dataset (storage.safe_name refuses it)
        known = []
    if not known:
        raise HTTPException(404, f"no dataset {dataset}")
    return known


def _compared(request: Request, name: str, compute, **context) -> Response:
    """`name` rendered with compute(old, new) as `result`, or with the reason there is none:
    a dataset of one version (200, nothing is wrong) or versions that cannot be compared (400)."""
    dataset = request.path_params["dataset"]
    known = _known(request, dataset)
    old, new = (request.query_params.get(k) or None for k in ("old", "new"))
    context |= {"dataset": dataset, "known": known, "old": old, "new": new, "result": None, "message": None}
    if len(known) < 2:
        only = known[0]["dataset_version"]
        context["message"] = f"Dataset {dataset} has only one version ({only}): there is nothing to compare."
        return _render(request, name, **context)
    try:
        result = compute(dataset, old, new)
    except ValueError as e:  # a version the dataset does not have, or none before the chosen one
        context["message"] = str(e)
        return _render(request, name, 400, **context)
    context |= {"result": result, "old": result["old"], "new": result["new"]}
    return _render(request, name, **context)


def versions_page(request: Request) -> Response:
    store = request.app.state.reader.store
    return _compared(request, "versions.html",
                     lambda d, old, new: versions.diff_versions(store, d, old, new, examples=EXAMPLES))


def _image_changes(store, image: str):
    """versions.image_changes for the page: 404 when neither version has a row of the image, and the
    image key (any row has it) for the heading."""
    def compute(dataset: str, old: str | None, new: str | None) -> dict:
        result = versions.image_changes(store, dataset, image, old, new)
        rows = [row for items in result["assets"].values() for i in items for row in (i["new"], i["old"]) if row]
        if not rows:
            raise HTTPException(404, f"image {image} is in neither version")
        return {**result, "image_key": next((r["image_key"] for r in rows if r.get("image_key")), None)}
    return compute


def image_versions_page(request: Request) -> Response:
    image = request.path_params["image_id"]
    return _compared(request, "versions_image.html", _image_changes(request.app.state.reader.store, image),
                     image_id=image)
