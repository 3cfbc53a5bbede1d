"""`digitrec serve`: the HTTP API and the draw-a-digit page, FastAPI on uvicorn.

The model is loaded once. Each request's image is decoded and read in a small thread pool; requests
beyond what the pool and a short queue hold are refused at once with 503, so a burst never piles up
into timeouts. Bodies over the size limit are cut off while they arrive, not after.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Annotated, Callable

from fastapi import Body, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from digitrec.classifier import CHECKPOINT_NAME, Classifier
from digitrec.errors import DigitrecError, InputTooLarge, UnsupportedInput
from digitrec.inference import open_reader
from digitrec.predict import read_image
from digitrec.preprocess import decode_image

MAX_BODY_BYTES = 10 * 1024 * 1024
BODY_SECONDS = 30.0  # the longest a request body may take to arrive
MAX_BATCH_IMAGES = 64
DEFAULT_QUEUE = 16  # requests waiting for a thread: at about 2 ms a reading, a wait far under 50 ms
WEB = resources.files("digitrec") / "web"
CONFIG_VARIABLE = "DIGITREC_SERVE_CONFIG"  # how `--workers N` hands the settings to each process


class Item(BaseModel):
    digit: int = Field(description="the digit read")
    probability: float = Field(description="the model's probability for that digit")
    probabilities: list[float] = Field(description="probabilities of 0 to 9")
    box: list[int] = Field(description="where the digit is in the image: x0, y0, x1, y1 in pixels (x1, y1 exclusive)")
    label: str | None = Field(None, description="the class's name, for a model of things other than digits "
                                                "(then `digit` is the class's index)")
    input_png: str | None = Field(None, description="with inputs=true: the 28x28 image the model saw, a base64 PNG")


class Line(BaseModel):
    digits: str = Field(description="the line's digits, left to right")
    confidence: float = Field(description="the probability of the line's least certain digit")
    items: list[Item]


class Prediction(BaseModel):
    """The same object as `digitrec predict --json` prints."""

    file: str | None = Field(None, description="the upload's file name, when it had one")
    digits: str = Field(description="every digit read: each line's left to right, the lines (top to bottom) "
                                    "joined with a newline")
    confidence: float = Field(description="the probability of the least certain digit")
    uncertain: bool | None = Field(None, description="present and true when a digit was read with low probability")
    label: str | None = Field(None, description="the class name read, for a model of things other than digits")
    items: list[Item] = Field(description="every digit read, in reading order")
    lines: list[Line] = Field(description="the lines of writing, top to bottom")


class ModelInfo(BaseModel):
    name: str = Field(description="the model preset")
    source: str = Field(description="where the weights were loaded from")
    parameters: int | None = Field(description="trainable numbers in the network (unknown for an ONNX session)")
    size_bytes: int | None = Field(description="size of the weights file")
    accuracy: float | None = Field(description="test accuracy recorded with the weights, when known")
    dataset: str | None = None


class Health(BaseModel):
    status: str
    model: str
    in_flight: int = Field(description="requests being read or waiting now")
    capacity: int = Field(description="requests held at once before the server answers 503")


class Problem(BaseModel):
    detail: str


ERRORS = {status: {"model": Problem, "description": description} for status, description in (
    (400, "empty upload or a malformed request"),
    (408, "the body did not arrive in time"),
    (413, "body or image too large"),
    (415, "not an image"),
    (422, "an image, but no digit could be read in it (or a query parameter of the wrong type)"),
    (503, "the server is busy: try again in a moment"))}

SINGLE = Query(False, description="read the whole image as one digit")
INPUTS = Query(False, description="add the 28x28 image the model saw to each item, as a base64 PNG")
ImageFile = Annotated[UploadFile, File(description="the image: PNG, JPEG, GIF, BMP, WebP, TIFF...")]
ImageFiles = Annotated[list[UploadFile], File(min_length=1, max_length=MAX_BATCH_IMAGES,
                                              description=f"1 to {MAX_BATCH_IMAGES} images, read in order")]


def images_in(field: str) -> dict:
    """What a multipart part holds, which a type cannot say: OpenAPI's encoding, merged into the typed body."""
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": {field: {"contentType": "image/*"}}}}}}


RawImage = Annotated[bytes, Body(media_type="image/*", min_length=1, description="the image's bytes, sent with its own "
                                 "Content-Type (image/png, image/jpeg...)")]


class Overloaded(DigitrecError):
    """Every thread is busy and the queue is full."""


class NothingToRead(DigitrecError):
    """A valid image in which no digit could be read."""


class UploadTooSlow(DigitrecError):
    """A body still arriving when its time is up: a stalled or deliberately slow client."""


STATUS = [(UploadTooSlow, 408), (InputTooLarge, 413), (UnsupportedInput, 415), (NothingToRead, 422), (Overloaded, 503), (DigitrecError, 400)]


class InferencePool:
    """A fixed set of threads with a bounded queue: a caller beyond it is refused at once.

    All bookkeeping happens on the event loop's thread, so a plain counter is enough.
    """

    def __init__(self, threads: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="digitrec-read")
        self.capacity = threads + queue
        self.in_flight = 0

    def admit(self) -> None:
        if self.in_flight >= self.capacity:
            raise Overloaded("the server is busy; try again in a moment (a server started with a larger "
                             "--queue or more --workers holds more requests at once)")

    async def run(self, function: Callable, *args):
        self.admit()
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.in_flight -= 1


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over `limit`, and an error as soon as the
    bytes actually received pass it (a chunked or lying client), so memory never holds more."""

    def __init__(self, app, limit: int, seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    def message(self) -> str:
        return (f"the request body is over the {self.limit:,}-byte limit; send a smaller image "
                "(or start the server with a larger --max-body)")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": self.message()}, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0
        deadline = asyncio.get_running_loop().time() + self.seconds

        async def limited_receive():
            nonlocal received
            remaining = deadline - asyncio.get_running_loop().time()
            try:  # a client trickling its upload would otherwise hold a connection and a slot forever
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise UploadTooSlow(f"the request body did not arrive within {self.seconds:g} s; "
                                    "send the image in one go over a faster connection") from None
            received += len(message.get("body", b""))
            if received > self.limit:
                raise InputTooLarge(self.message())
            return message

        await self.app(scope, limited_receive, send)


def read_upload(data: bytes, classifier: Classifier, single: bool, inputs: bool,
                name: str | None = None) -> Prediction:
    """Decode one uploaded image and read its digits: the object `digitrec predict --json` prints.

    Validated here, once, so the schema's Prediction is what is sent; validating and encoding a
    six-digit answer takes about 10 us, nothing beside the 0.6 ms of reading even one MNIST digit."""
    prefix = f"{name}: " if name else ""
    if not data:
        raise DigitrecError(f"{prefix}the upload is empty; send the bytes of a PNG, JPEG or other image")
    try:
        image = decode_image(data)
    except DigitrecError as error:
        raise type(error)(prefix + str(error)) from error
    try:
        reading = read_image(image, classifier, single=single)
    except UnsupportedInput as error:  # decoded fine, so the trouble is what is in it
        raise NothingToRead(prefix + str(error)) from error
    return Prediction.model_validate({"file": name, **reading.to_json(include_inputs=inputs)})


def recorded_accuracy(weights: Path) -> float | None:
    """The last test accuracy of the run a checkpoint belongs to, from the run's small summary (loading
    the checkpoint for one number would read every tensor and optimizer state in it)."""
    if weights.suffix != ".pt":
        return None
    from digitrec.run import Run  # a .pt file is a torch model: the torch side is there already

    return Run.open(weights).accuracy


def model_info(classifier: Classifier) -> ModelInfo:
    """Size and recorded accuracy of the loaded weights: from the safetensors header or the run's metrics."""
    source = Path(classifier.source)
    weights = source / CHECKPOINT_NAME if source.is_dir() else source
    accuracy = classifier.metadata.get("accuracy")
    accuracy = float(accuracy) if accuracy is not None else recorded_accuracy(weights)
    return ModelInfo(name=classifier.name, source=classifier.source, parameters=classifier.parameters or None,
                     size_bytes=weights.stat().st_size if weights.is_file() else None, accuracy=accuracy,
                     dataset=classifier.metadata.get("dataset"))


class ContentTypeRoute(APIRoute):
    """A route chosen by the request's Content-Type as well as its path and method, as its typed body
    declares it: one path then takes a multipart upload and a raw image body, each with typed
    parameters. A route without a body takes whatever the others left (to refuse it clearly). The pool
    admits a request before its body is read, so a refused one is never read only to be thrown away."""

    def matches(self, scope) -> tuple[Match, dict]:
        match, child_scope = super().matches(scope)
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
        if match is Match.FULL and not self.accepts(content_type.lower()):
            return Match.NONE, {}
        return match, child_scope

    def accepts(self, content_type: str) -> bool:
        if self.body_field is None:
            return True
        declared = self.body_field.field_info.media_type.lower()
        if declared.endswith("/*"):
            return content_type.startswith(declared[:-1])
        return content_type.split(";")[0].strip() == declared

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def admitted(request: Request):
            request.app.state.pool.admit()
            return await handler(request)

        return admitted


def create_app(classifier: Classifier, max_body: int = MAX_BODY_BYTES, threads: int = 2,
               queue: int = DEFAULT_QUEUE, body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The whole service for one model; `digitrec serve` runs it on uvicorn."""
    from fastapi_offline import FastAPIOffline

    pool = InferencePool(threads, queue)
    info = model_info(classifier)
    # FastAPIOffline: the same FastAPI, but /docs loads Swagger UI from the package, not a CDN.
    app = FastAPIOffline(title="digitrec", version="1", summary="Read handwritten digits in images.",
                         redoc_url=None)
    app.state.pool = pool
    app.add_middleware(BodyLimit, limit=max_body, seconds=body_seconds)
    app.mount("/web", StaticFiles(directory=str(WEB)), name="web")
    add_error_handlers(app)
    add_predict_routes(app, classifier, pool)
    app.openapi = lambda: one_operation_per_path(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(WEB / "index.html"))

    @app.get("/api/models")
    async def models() -> list[ModelInfo]:
        """The model this server reads with."""
        return [info]

    @app.get("/health")
    async def health() -> Health:
        return Health(status="ok", model=classifier.name, in_flight=pool.in_flight, capacity=pool.capacity)

    return app


def add_predict_routes(app: FastAPI, classifier: Classifier, pool: InferencePool) -> None:
    """POST /api/predict (a multipart `file`, or a raw image body) and POST /api/predict/batch."""

    async def predict(file: ImageFile, single: bool = SINGLE, inputs: bool = INPUTS) -> Prediction:
        """Read the digits in one image: a multipart field `file`, or the raw body with an image/* type."""
        return await pool.run(read_upload, await file.read(), classifier, single, inputs, file.filename)

    async def predict_raw(image: RawImage, single: bool = SINGLE, inputs: bool = INPUTS) -> Prediction:
        return await pool.run(read_upload, image, classifier, single, inputs)

    async def predict_batch(files: ImageFiles, single: bool = SINGLE, inputs: bool = INPUTS) -> list[Prediction]:
        """Read several images sent as multipart fields named `files` (at most 64), in order."""
        uploads = [(await upload.read(), upload.filename) for upload in files]

        def read_all() -> list[Prediction]:
            return [read_upload(data, classifier, single, inputs, name or f"image {number}")
                    for number, (data, name) in enumerate(uploads, 1)]

        return await pool.run(read_all)

    async def not_an_image(request: Request) -> None:
        batch = request.url.path.endswith("/batch")
        raise UnsupportedInput(
            f"Content-Type {request.headers.get('content-type') or '(none)'} is not what this path takes; send "
            + ("the images as multipart/form-data, each in a field named 'files'" if batch else
               "the image as a multipart field 'file' or as the raw body with Content-Type image/png, image/jpeg..."))

    # Tried in this order, each only for the Content-Type its body declares (ContentTypeRoute).
    for path, endpoint, extra in (("/api/predict", predict, images_in("file")), ("/api/predict", predict_raw, None),
                                  ("/api/predict/batch", predict_batch, images_in("files")),
                                  ("/api/predict", not_an_image, None), ("/api/predict/batch", not_an_image, None)):
        documented = endpoint is not not_an_image
        app.router.add_api_route(path, endpoint, methods=["POST"], route_class_override=ContentTypeRoute,
                                 responses=ERRORS if documented else None, include_in_schema=documented,
                                 response_model_exclude_none=True, openapi_extra=extra,
                                 form_limits={"max_files": MAX_BATCH_IMAGES, "max_fields": 8})


def one_operation_per_path(app: FastAPI) -> dict:
    """The OpenAPI document, with the request bodies of routes that share a path and method (chosen by
    Content-Type) as the content types of one operation: FastAPI would keep only the last route's."""
    from fastapi.openapi.utils import get_openapi

    if app.openapi_schema:
        return app.openapi_schema
    routes = [route for route in app.routes if getattr(route, "include_in_schema", False)]
    shared = {}
    for route in routes:
        for method in getattr(route, "methods", ()):
            shared.setdefault((route.path, method), []).append(route)
    first = [group[0] for group in shared.values()]
    extra = [route for group in shared.values() for route in group[1:]]
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=first)
    for route in extra:
        other = get_openapi(title=app.title, version=app.version, routes=[route])
        for path, operations in other["paths"].items():
            for method, operation in operations.items():
                body = schema["paths"][path][method].setdefault("requestBody", {"content": {}, "required": True})
                body["content"].update(operation["requestBody"]["content"])
        schema.setdefault("components", {}).setdefault("schemas", {}).update(
            other.get("components", {}).get("schemas", {}))
    forms_take_only_their_fields(schema)
    app.openapi_schema = schema
    return schema


def forms_take_only_their_fields(schema: dict) -> None:
    """Say that a multipart body holds its own fields alone: the server reads at most 8 other fields
    before it refuses a form (a bound on what a request may make it parse), and ignores them."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form and "$ref" in form["schema"]:
                name = form["schema"]["$ref"].rsplit("/", 1)[-1]
                schema["components"]["schemas"][name]["additionalProperties"] = False


def add_error_handlers(app: FastAPI) -> None:
    """Every error as {"detail": one line}: ours with their own status, a missing body or form field
    as 400, a malformed multipart body as 400 with the parser's own reason, a bug as 500."""

    @app.exception_handler(DigitrecError)
    async def digitrec_error(request: Request, error: DigitrecError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem["loc"][0] == "body" for problem in problems):
            return JSONResponse({"detail": body_problem(problems)}, status_code=400)
        described = "; ".join(f"{' '.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                              for problem in problems)
        return JSONResponse({"detail": described}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        cause = error.__cause__  # FastAPI answers any failure to read a body with a bare 400, hiding why
        if isinstance(cause, DigitrecError):  # the body limit or deadline (BodyLimit)
            return await digitrec_error(request, cause)
        detail = f"{error.detail}: {cause}" if error.status_code == 400 and cause else str(error.detail)
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(error).__name__}: {error}); this is a bug in "
                                       "digitrec, please report it with the request that caused it"}, status_code=500)


def body_problem(problems: list[dict]) -> str:
    """What was wrong with a request body, and what to send instead."""
    fields = {str(problem["loc"][1]) if len(problem["loc"]) > 1 else "" for problem in problems}
    if "files" in fields:
        return (f"the multipart request needs 1 to {MAX_BATCH_IMAGES} file fields 'files'; send "
                "-F files=@A.png -F files=@B.png")
    if "file" in fields:
        return "the multipart request has no file field 'file'; send the image as file=@IMAGE"
    return "the upload is empty; send the bytes of a PNG, JPEG or other image"


def app_from_environment() -> FastAPI:
    """The factory each uvicorn worker process calls when `--workers` is above 1."""
    settings = json.loads(os.environ[CONFIG_VARIABLE])
    classifier = open_for_serving(settings["model"], settings.get("backend"))
    return create_app(classifier, settings["max_body"], settings["threads"], settings["queue"])


def open_for_serving(model: str | None, backend: str | None = None) -> Classifier:
    """The model to serve, each reading thread on one core: one image is far too small to split across
    cores. (A PyTorch model's thread count is the process's, for as long as it serves.)"""
    classifier = open_reader(model, backend)
    if classifier.metadata.get("backend") != "onnx":
        import torch

        torch.set_num_threads(1)
    return classifier


def _check_port(host: str, port: int) -> None:
    """Fail with one clear line now rather than a uvicorn log line after the model has loaded."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise DigitrecError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another "
                            "--port or --host, or stop the program that holds it") from error


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 8000, workers: int | None = None,
          threads: int | None = None, queue: int = DEFAULT_QUEUE, max_body: int = MAX_BODY_BYTES,
          log: Callable[[str], None] = print, backend: str | None = None) -> None:
    """Open the model (on `backend`: torch or onnx, see inference.open_model), then serve until interrupted.

    `workers` None is one process per core: a reading holds Python's lock for most of its few
    milliseconds, so threads of one process cannot use a second core (on 2 cores, 451 requests/s with
    two workers against 190 with one, as issue 13 measured with wrk; docs/serve.md)."""
    import uvicorn

    if not 1 <= port <= 65535:
        raise DigitrecError(f"--port {port} is not a TCP port; choose one from 1 to 65535 (default 8000)")
    if (workers is not None and workers < 1) or (threads is not None and threads < 1) or queue < 0 or max_body < 1:
        raise DigitrecError("--workers, --threads and --max-body must be at least 1, and --queue at least 0")
    cores = usable_cores()
    chosen = f"workers {workers}" if workers else f"workers {cores}: one per core"
    workers = workers or cores
    threads = threads or max(1, cores // workers)
    _check_port(host, port)
    classifier = open_for_serving(model, backend)  # in this process too, so a bad --model fails here in one line
    log(f"digitrec: serving the {classifier.name} model from {classifier.source}: page at http://{host}:{port}/ , API docs "
        f"at http://{host}:{port}/docs ({chosen}, reading threads {threads} each, queue {queue}); Ctrl+C stops")
    options = dict(host=host, port=port, access_log=False, log_level="warning", server_header=False)
    if workers == 1:
        uvicorn.run(create_app(classifier, max_body, threads, queue), **options)
        return
    os.environ[CONFIG_VARIABLE] = json.dumps(
        {"model": model, "backend": backend, "max_body": max_body, "threads": threads, "queue": queue})
    uvicorn.run("digitrec.server:app_from_environment", factory=True, workers=workers, **options)
