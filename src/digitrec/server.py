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
from typing import Callable

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from digitrec.checkpoint import LoadedModel
from digitrec.errors import DigitrecError, InputTooLarge, UnsupportedInput
from digitrec.models import count_parameters
from digitrec.predict import default_model, read_image
from digitrec.preprocess import decode_image
from digitrec.run import Run

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


class Prediction(BaseModel):
    """The same object as `digitrec predict --json` prints."""

    file: str | None = Field(None, description="the upload's file name, when it had one")
    digits: str = Field(description="every digit read, left to right")
    confidence: float = Field(description="the probability of the least certain digit")
    uncertain: bool | None = Field(None, description="present and true when a digit was read with low probability")
    label: str | None = Field(None, description="the class name read, for a model of things other than digits")
    items: list[Item]


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
    (413, "body or image too large"),
    (415, "not an image"),
    (422, "an image, but no digit could be read in it"),
    (503, "the server is busy: try again in a moment"))}

IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


SINGLE = Query(False, description="read the whole image as one digit")
INPUTS = Query(False, description="add the 28x28 image the model saw to each item, as a base64 PNG")


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


def read_upload(data: bytes, loaded: LoadedModel, single: bool, inputs: bool, name: str | None = None) -> dict:
    """Decode one uploaded image and read its digits: the JSON object of `digitrec predict --json`."""
    prefix = f"{name}: " if name else ""
    if not data:
        raise DigitrecError(f"{prefix}the upload is empty; send the bytes of a PNG, JPEG or other image")
    try:
        image = decode_image(data)
    except DigitrecError as error:
        raise type(error)(prefix + str(error)) from error
    try:
        reading = read_image(image, loaded, single=single)
    except UnsupportedInput as error:  # decoded fine, so the trouble is what is in it
        raise NothingToRead(prefix + str(error)) from error
    answer = reading.to_json(include_inputs=inputs)
    return {"file": name, **answer} if name else answer


def model_info(loaded: LoadedModel) -> ModelInfo:
    """Size and recorded accuracy of the loaded weights: from the safetensors header or the run's history."""
    source = Path(loaded.source)
    weights = source / "checkpoint.pt" if source.is_dir() else source
    accuracy = loaded.metadata.get("accuracy")
    if accuracy is None and weights.suffix == ".pt":
        accuracy = Run.open(weights).accuracy
    return ModelInfo(name=loaded.name, source=loaded.source, parameters=count_parameters(loaded.model) or None,
                     size_bytes=weights.stat().st_size if weights.is_file() else None,
                     accuracy=float(accuracy) if accuracy is not None else None,
                     dataset=loaded.metadata.get("dataset"))


def create_app(loaded: LoadedModel, max_body: int = MAX_BODY_BYTES, threads: int = 2,
               queue: int = DEFAULT_QUEUE, body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The whole service for one loaded model; `digitrec serve` runs it on uvicorn."""
    from fastapi_offline import FastAPIOffline

    pool = InferencePool(threads, queue)
    info = model_info(loaded)
    # FastAPIOffline: the same FastAPI, but /docs loads Swagger UI from the package, not a CDN.
    app = FastAPIOffline(title="digitrec", version="1", summary="Read handwritten digits in images.",
                         redoc_url=None)
    app.add_middleware(BodyLimit, limit=max_body, seconds=body_seconds)
    app.mount("/web", StaticFiles(directory=str(WEB)), name="web")

    @app.exception_handler(DigitrecError)
    async def digitrec_error(request: Request, error: DigitrecError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{' '.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                             for problem in error.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(error).__name__}: {error}); this is a bug in "
                                       "digitrec, please report it with the request that caused it"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(WEB / "index.html"))

    @app.post("/api/predict", response_model=Prediction, response_model_exclude_none=True, responses=ERRORS,
              openapi_extra=IMAGE_BODY)
    async def predict(request: Request, single: bool = SINGLE, inputs: bool = INPUTS) -> JSONResponse:
        """Read the digits in one image: a multipart field `file`, or the raw body with an image/* type."""
        pool.admit()  # before reading a body that would only be thrown away
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise DigitrecError("the multipart request has no file field 'file'; send the image as file=@IMAGE")
                data, name = await upload.read(), upload.filename
        elif content_type.startswith(("image/", "application/octet-stream")):
            data, name = await request.body(), None
        else:
            raise UnsupportedInput(f"Content-Type {content_type or '(none)'} is not an image; send the image as a "
                                   "multipart field 'file' or as the raw body with Content-Type image/png, image/jpeg...")
        # The answer already is Prediction's JSON (a test checks it against the model): sent as it is, it
        # skips a validation and re-encoding that cost as much as a quarter of a reading.
        return JSONResponse(await pool.run(read_upload, data, loaded, single, inputs, name))

    @app.post("/api/predict/batch", response_model=list[Prediction], response_model_exclude_none=True,
              responses=ERRORS, openapi_extra=BATCH_BODY)
    async def predict_batch(request: Request, single: bool = SINGLE, inputs: bool = INPUTS) -> JSONResponse:
        """Read several images sent as multipart fields named `files` (at most 64), in order."""
        pool.admit()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise UnsupportedInput("send the images as multipart/form-data, each in a field named 'files'")
        async with request.form(max_files=MAX_BATCH_IMAGES, max_fields=8) as form:
            uploads = [(await upload.read(), upload.filename) for upload in form.getlist("files")
                       if not isinstance(upload, str)]
        if not uploads:
            raise DigitrecError("the multipart request has no file fields 'files'; send -F files=@A.png -F files=@B.png")

        def read_all() -> list[dict]:
            return [read_upload(data, loaded, single, inputs, name or f"image {number}")
                    for number, (data, name) in enumerate(uploads, 1)]

        return JSONResponse(await pool.run(read_all))

    @app.get("/api/models", response_model=list[ModelInfo])
    async def models() -> list[ModelInfo]:
        """The model this server reads with."""
        return [info]

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", model=loaded.name, in_flight=pool.in_flight, capacity=pool.capacity)

    return app


def app_from_environment() -> FastAPI:
    """The factory each uvicorn worker process calls when `--workers` is above 1."""
    settings = json.loads(os.environ[CONFIG_VARIABLE])
    _size_torch_threads()
    return create_app(_load(settings["model"], settings.get("backend")), settings["max_body"], settings["threads"],
                      settings["queue"])


def _load(model: str | None, backend: str | None = None) -> LoadedModel:
    from digitrec.export import load_backend

    if model is None and backend is None:
        return default_model()
    return load_backend(model or "best", backend, threads=1)  # one core per reading thread, as for torch


def _size_torch_threads() -> None:
    import torch

    # One image is far too small to split across cores: each reading thread gets one core instead.
    torch.set_num_threads(1)


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
    """Load the model (on `backend`: torch or onnx, see export.load_backend), then serve until interrupted.

    `workers` None is one process per core: a reading holds Python's lock for most of its few
    milliseconds, so threads of one process cannot use a second core (on 2 cores, 451 requests/s with
    two workers against 190 with one, docs/serve.md)."""
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
    loaded = _load(model, backend)  # in this process too, so a bad --model fails here with one clear line
    _size_torch_threads()
    log(f"digitrec: serving the {loaded.name} model from {loaded.source}: page at http://{host}:{port}/ , API docs "
        f"at http://{host}:{port}/docs ({chosen}, reading threads {threads} each, queue {queue}); Ctrl+C stops")
    options = dict(host=host, port=port, access_log=False, log_level="warning", server_header=False)
    if workers == 1:
        uvicorn.run(create_app(loaded, max_body, threads, queue), **options)
        return
    os.environ[CONFIG_VARIABLE] = json.dumps(
        {"model": model, "backend": backend, "max_body": max_body, "threads": threads, "queue": queue})
    uvicorn.run("digitrec.server:app_from_environment", factory=True, workers=workers, **options)
