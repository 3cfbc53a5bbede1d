"""The HTTP API of `digitrec serve`: answers on real MNIST digits, every bad input as a 4xx JSON, overload as 503."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import picture_of_digits, serving
from digitrec import server as server_module
from digitrec.checkpoint import Checkpoint, load_model
from digitrec.cli import main
from digitrec.models import count_parameters
from digitrec.server import MAX_BODY_BYTES, create_app

ROOT = Path(__file__).parents[1]


def png(array) -> bytes:
    buffer = BytesIO()
    Image.fromarray(np.asarray(array)).save(buffer, "PNG")
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A 74-byte PNG that declares width x height grey pixels: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b""))


@contextmanager
def client_of(app):
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def client(quick_model):
    with client_of(create_app(quick_model)) as client:
        yield client


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.test_images[:20], [str(label) for label in mnist.test_labels[:20].tolist()]


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail.lower(), detail


def test_single_digits_are_read_from_raw_png_bodies(client, digits):
    images, labels = digits
    answers = [client.post("/api/predict?single=true", content=png(image), headers={"Content-Type": "image/png"})
               for image in images]
    assert all(answer.status_code == 200 for answer in answers)
    read = [answer.json()["digits"] for answer in answers]
    assert sum(got == want for got, want in zip(read, labels)) >= 18, (read, labels)
    first = answers[0].json()
    assert "file" not in first  # a raw body has no name
    (item,) = first["items"]
    assert len(item["probabilities"]) == 10 and abs(sum(item["probabilities"]) - 1) < 1e-3
    assert item["probability"] == pytest.approx(max(item["probabilities"]), abs=1e-4)
    assert item["digit"] == max(range(10), key=item["probabilities"].__getitem__)
    x0, y0, x1, y1 = item["box"]
    assert 0 <= x0 < x1 <= 28 and 0 <= y0 < y1 <= 28
    assert first["confidence"] == pytest.approx(item["probability"], abs=1e-4)


def test_answers_are_exactly_the_documented_response_model(client, digits, mnist):
    from digitrec.server import Prediction

    image = png(digits[0][0])
    answers = [client.post("/api/predict?single=true", content=image, headers={"Content-Type": "image/png"}).json(),
               client.post("/api/predict?inputs=true", files={"file": ("a.png", image, "image/png")}).json(),
               *client.post("/api/predict/batch", files=[("files", ("b.png", image, "image/png"))] * 2).json()]
    for answer in answers:
        assert Prediction.model_validate(answer).model_dump(exclude_none=True) == answer


def test_multipart_upload_matches_the_raw_body_and_names_the_file(client, digits):
    image = png(digits[0][0])
    raw = client.post("/api/predict?single=true", content=image, headers={"Content-Type": "image/png"}).json()
    upload = client.post("/api/predict?single=true", files={"file": ("seven.png", image, "image/png")}).json()
    assert upload.pop("file") == "seven.png"
    assert upload == raw


def test_a_photo_of_a_number_is_read_left_to_right_with_boxes(client, mnist):
    chosen = [index for index in range(100) if mnist.test_labels[index] in (3, 4, 6)][:3]
    picture = picture_of_digits([mnist.test_images[index] for index in chosen])
    answer = client.post("/api/predict", files={"file": ("number.png", picture, "image/png")})
    assert answer.status_code == 200, answer.text
    reading = answer.json()
    assert reading["digits"] == "".join(str(int(mnist.test_labels[index])) for index in chosen)
    boxes = [item["box"] for item in reading["items"]]
    assert [box[0] for box in boxes] == sorted(box[0] for box in boxes)
    assert all(0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 200 for x0, y0, x1, y1 in boxes)
    assert all(boxes[i][2] <= boxes[i + 1][0] for i in range(len(boxes) - 1))  # one box per digit, no overlap
    whole = client.post("/api/predict?single=true", content=picture, headers={"Content-Type": "image/png"}).json()
    assert len(whole["items"]) == 1


def test_inputs_gives_the_28x28_image_the_model_saw(client, digits):
    image = digits[0][0]
    item = client.post("/api/predict?single=true&inputs=true", content=png(image),
                       headers={"Content-Type": "image/png"}).json()["items"][0]
    seen = np.asarray(Image.open(BytesIO(base64.b64decode(item["input_png"]))))
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    # White on black like MNIST, about as much ink as the digit sent.
    assert seen[0].max() < 128 and seen.max() > 200
    assert 0.4 < (seen > 128).sum() / int((image > 128).sum()) < 2.5
    plain = client.post("/api/predict?single=true", content=png(image), headers={"Content-Type": "image/png"})
    assert "input_png" not in plain.json()["items"][0]


def test_batch_reads_each_file_in_order(client, digits):
    images, labels = digits
    files = [("files", (f"{index}.png", png(images[index]), "image/png")) for index in range(3)]
    answer = client.post("/api/predict/batch?single=true", files=files)
    assert answer.status_code == 200, answer.text
    readings = answer.json()
    assert [reading["file"] for reading in readings] == ["0.png", "1.png", "2.png"]
    single = [client.post("/api/predict?single=true", content=png(images[index]),
                          headers={"Content-Type": "image/png"}).json()["digits"] for index in range(3)]
    assert [reading["digits"] for reading in readings] == single


def test_batch_errors_name_the_bad_file(client, digits):
    files = [("files", ("good.png", png(digits[0][0]), "image/png")),
             ("files", ("notes.txt", b"just some text", "text/plain"))]
    assert_problem(client.post("/api/predict/batch", files=files), 415, "notes.txt")
    assert_problem(client.post("/api/predict/batch", files={"other": ("a.png", b"x", "image/png")}), 400, "files")
    assert_problem(client.post("/api/predict/batch", content=b"{}", headers={"Content-Type": "application/json"}),
                   415, "multipart")


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"", "image/png", 400, ["empty"]),
    (b"hello, this is not a picture", "image/png", 415, ["not a picture"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image/png", 415, []),  # cut off inside the header
    (b"{\"image\": 1}", "application/json", 415, ["content-type", "image/png"]),
    (b"garbage", "multipart/form-data", 400, ["boundary"]),
    (png_bomb(8_000, 8_000), "image/png", 413, ["pixels"]),
    (png_bomb(20_000, 20_000), "image/png", 413, ["too large"]),
])
def test_bad_bodies_get_one_clear_4xx(client, body, content_type, status, words):
    assert_problem(client.post("/api/predict", content=body, headers={"Content-Type": content_type}), status, *words)


def test_a_multipart_request_without_the_file_field_says_what_to_send(client):
    answer = client.post("/api/predict", files={"image": ("a.png", b"abc", "image/png")})
    assert_problem(answer, 400, "file")


def test_a_batch_over_64_images_is_refused(client):
    files = [("files", (f"{index}.png", b"x", "image/png")) for index in range(65)]
    assert_problem(client.post("/api/predict/batch", files=files), 400, "64")


def test_a_bug_is_still_answered_as_json(quick_model, monkeypatch):
    def broken(*args):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(server_module, "read_upload", broken)
    with client_of(create_app(quick_model)) as client:
        answer = client.post("/api/predict", content=b"x", headers={"Content-Type": "image/png"})
    assert_problem(answer, 500, "bug", "something unforeseen")


def test_a_picture_with_nothing_to_read_is_422_not_415(client):
    blank = png(np.full((100, 200), 240, np.uint8))
    answer = client.post("/api/predict", content=blank, headers={"Content-Type": "image/png"})
    assert_problem(answer, 422, "no digits")


def test_bad_query_and_unknown_paths_are_json(client):
    assert_problem(client.post("/api/predict?single=maybe", content=b"x", headers={"Content-Type": "image/png"}),
                   422, "single")
    assert_problem(client.get("/api/nothing-here"), 404)
    assert_problem(client.get("/api/predict"), 405)


def test_a_declared_body_over_the_limit_is_refused_unread(quick_model):
    with client_of(create_app(quick_model, max_body=50_000)) as small:
        answer = small.post("/api/predict", content=b"\0" * 60_000, headers={"Content-Type": "image/png"})
        assert_problem(answer, 413, "50,000")
        assert small.post("/api/predict", content=b"\0" * 40_000, headers={"Content-Type": "image/png"}).status_code == 415
    with client_of(create_app(quick_model)) as default:
        answer = default.post("/api/predict", content=b"\0" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "image/png"})
        assert_problem(answer, 413, "10,485,760")


def test_a_streamed_body_is_cut_off_at_the_limit_not_read_to_the_end(quick_model):
    """No Content-Length (chunked): the server must stop reading once the limit is passed."""
    app = create_app(quick_model, max_body=100_000)
    sent = 0

    async def body():
        nonlocal sent
        for _ in range(1000):  # 10 MB offered in 10 kB chunks
            sent += 10_000
            yield b"\0" * 10_000

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/api/predict", content=body(), headers={"Content-Type": "image/png"})

    answer = asyncio.run(post())
    assert_problem(answer, 413, "100,000")
    assert sent <= 120_000


def test_overload_is_refused_with_503_at_once(quick_model, monkeypatch, digits):
    release = threading.Event()
    slow_read = server_module.read_upload

    def blocked_read(*args, **kwargs):
        release.wait(10)
        return slow_read(*args, **kwargs)

    monkeypatch.setattr(server_module, "read_upload", blocked_read)
    image = png(digits[0][0])
    with client_of(create_app(quick_model, threads=1, queue=1)) as client:
        first: list[httpx.Response] = []
        workers = [threading.Thread(target=lambda: first.append(client.post(
            "/api/predict?single=true", content=image, headers={"Content-Type": "image/png"}))) for _ in range(2)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 10
        while client.get("/health").json()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        refused = client.post("/api/predict?single=true", content=image, headers={"Content-Type": "image/png"})
        assert time.monotonic() - started < 2
        assert_problem(refused, 503, "busy")
        assert refused.headers["retry-after"] == "1"
        release.set()
        for worker in workers:
            worker.join(10)
        assert [answer.status_code for answer in first] == [200, 200]
        assert client.get("/health").json()["in_flight"] == 0


def test_models_and_health_describe_the_loaded_model(fast_run):
    loaded = load_model(fast_run)
    with client_of(create_app(loaded, threads=3, queue=5)) as client:
        (info,) = client.get("/api/models").json()
        health = client.get("/health").json()
    assert info["name"] == "fast" and info["source"] == str(fast_run) and info["dataset"] == "mnist"
    assert info["parameters"] == count_parameters(loaded.model)
    assert info["size_bytes"] > 4 * info["parameters"]  # float32 weights at the least
    assert info["accuracy"] == Checkpoint.load(fast_run).history.final_test.accuracy > 0.9
    assert health == {"status": "ok", "model": "fast", "in_flight": 0, "capacity": 8}


def test_openapi_documents_both_ways_to_send_an_image(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= body.keys()
    answers = schema["paths"]["/api/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "503"} <= answers.keys()
    assert {"digits", "confidence", "items"} <= schema["components"]["schemas"]["Prediction"]["properties"].keys()
    assert "/api/predict/batch" in schema["paths"] and "/api/models" in schema["paths"]


def test_page_and_docs_need_nothing_from_the_internet(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    for html in (page.text, docs.text):
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets
        for asset in assets:
            if asset.startswith("data:") or asset.startswith("#"):
                continue
            assert asset.startswith("/"), f"{asset} would be loaded from elsewhere"
            assert client.get(asset).status_code == 200, asset
    for asset in ("/web/app.js", "/web/style.css"):
        assert not re.search(r"https?://", client.get(asset).text), f"{asset} refers to another site"


def test_serve_command_fails_with_one_line_for_a_bad_model_or_a_taken_port(capsys, fast_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert main(["serve", "--port", str(free_port), "--model", "/no/such/run"]) == 1
    assert capsys.readouterr().err.startswith("digitrec: error: cannot find model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", str(fast_run)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("digitrec: error: cannot listen on 127.0.0.1:") and "--port" in error
    assert main(["serve", "--workers", "0", "--model", str(fast_run)]) == 1
    assert "--workers" in capsys.readouterr().err


def test_each_worker_process_builds_the_app_from_the_settings_it_is_handed(monkeypatch, fast_run, digits):
    settings = {"model": str(fast_run), "max_body": 1000, "threads": 1, "queue": 3}
    monkeypatch.setenv(server_module.CONFIG_VARIABLE, json.dumps(settings))
    with client_of(server_module.app_from_environment()) as client:
        assert client.get("/health").json()["capacity"] == 4
        assert client.get("/api/models").json()[0]["source"] == str(fast_run)
        assert_problem(client.post("/api/predict", content=bytes(2000), headers={"Content-Type": "image/png"}), 413)


def test_digitrec_serve_shows_the_page_and_stops_on_ctrl_c(fast_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--model", str(fast_run)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()
                time.sleep(0.2)
        assert page.status_code == 200 and "<canvas id=\"pad\"" in page.text
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=20)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert f"page at http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err


def test_concurrent_requests_never_mix_up_answers(client, mnist):
    from concurrent.futures import ThreadPoolExecutor

    bodies = [png(image) for image in mnist.test_images[100:160]]

    def ask(body: bytes) -> dict:
        return client.post("/api/predict?single=true", content=body, headers={"Content-Type": "image/png"}).json()

    one_by_one = [ask(body) for body in bodies]
    assert len({answer["digits"] for answer in one_by_one}) == 10, "the images say different things"
    with ThreadPoolExecutor(8) as pool:
        all_at_once = list(pool.map(ask, bodies))
    assert all_at_once == one_by_one


def test_a_slow_upload_is_cut_off_with_408(quick_model):
    with serving(create_app(quick_model, body_seconds=1.0)) as url:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                               b"Content-Length: 100000\r\n\r\n\x89PNG")  # then nothing more arrives
            started = time.monotonic()
            answer = connection.recv(65536)
            waited = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status_line, answer[:300]
    assert b"did not arrive within 1 s" in rest
    assert 0.5 < waited < 5


def test_serve_with_no_flags_runs_one_worker_per_usable_core(monkeypatch):
    import uvicorn

    started, lines = [], []
    monkeypatch.setenv(server_module.CONFIG_VARIABLE, "")  # restored afterwards: serve() sets it for its workers
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append((app, options)))
    monkeypatch.setattr(server_module, "usable_cores", lambda: 3)
    server_module.serve(port=8765, log=lines.append)
    (app, options), = started
    assert options["workers"] == 3 and app == "digitrec.server:app_from_environment"
    assert json.loads(server_module.os.environ[server_module.CONFIG_VARIABLE])["threads"] == 1
    assert "(workers 3: one per core, reading threads 1 each" in lines[0]
    monkeypatch.setattr(server_module, "usable_cores", lambda: 1)
    started.clear()
    server_module.serve(port=8765, log=lines.append)
    assert "workers" not in started[0][1] and "(workers 1: one per core" in lines[-1]


def test_an_impossible_port_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--port", "99999"])
    assert exit_code.value.code == 2
    error = capsys.readouterr().err
    assert "argument --port: 99999 is not a TCP port; choose one from 1 to 65535" in error and "Traceback" not in error
    with pytest.raises(server_module.DigitrecError, match="--port 99999 is not a TCP port"):
        server_module.serve(port=99999, log=lambda line: None)
def test_serving_the_shipped_model_imports_no_torch_or_training():
    """A digit photo posted to the app the server builds for the shipped model is read (the model runs)
    with neither torch nor any training module imported."""
    from digitrec.classifier import pretrained_path

    if not pretrained_path("best", ".onnx"):
        pytest.skip("the package ships no best.onnx")
    script = (
        "import asyncio, io, sys\n"
        "import httpx\n"
        "from PIL import Image\n"
        "from digitrec.server import create_app, open_for_serving\n"
        "app = create_app(open_for_serving(None))\n"
        f"picture = io.BytesIO(open({str(ROOT / 'docs' / 'img' / 'predict-digit.jpg')!r}, 'rb').read())\n"
        "async def ask():\n"
        "    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url='http://test') as client:\n"
        "        return await client.post('/api/predict', files={'file': ('a.jpg', picture.getvalue(), 'image/jpeg')})\n"
        "print(asyncio.run(ask()).status_code)\n"
        "heavy = ('torch', 'digitrec.training', 'digitrec.checkpoint', 'matplotlib', 'onnx')\n"
        "print(sorted(name for name in heavy if sys.modules.get(name)))\n")
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["200", "[]"]  # a digit read, the model run, and still none of them
