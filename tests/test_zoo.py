"""Published weights by name, against a loopback HTTP server that serves archives in the model zoo's layout (a
TensorFlow checkpoint of random weights, written as TensorFlow writes it): the download, its conversion checked
against converting the same archive directly, the cache hit (no second request), a download cut short, an archive
that is not the entry's, a cache entry that fails its check, offline, a read-only cache, an unknown name; and the
name through build_model, Segmenter.from_pretrained and the command line."""

import hashlib
import http.server
import os
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import torch

from deeplab_mobile import zoo
from deeplab_mobile.convert import convert_checkpoint
from deeplab_mobile.models import build_model, load_model_file
from deeplab_mobile.predict import Segmenter
from tests.convert.test_convert import random_state, tf_variables, write_tf_checkpoint
from tests.helpers import ROOT
from tests.test_hostile import read_only

pytestmark = pytest.mark.slow  # converts a width-0.5 MobileNetV2 checkpoint a few times

NAME = "deeplabv3_mnv2_dm05_pascal_trainaug"
ENTRY = zoo.ZOO[NAME]


def zoo_archive(folder, width=0.5, with_checkpoint=True):
    """An archive as the model zoo lays it out: <folder>/model.ckpt-30000.{index,data-*}."""
    inner = folder / "deeplabv3_mnv2_dm05_pascal_trainaug"
    inner.mkdir(parents=True)
    if with_checkpoint:
        write_tf_checkpoint(tf_variables(random_state(width=width, seed=7)), inner / "model.ckpt")
    else:
        (inner / "README").write_text("no checkpoint here")
    archive = folder / ENTRY.archive
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname=inner.name)
    return archive.read_bytes()


class Server:
    """Serves ``files`` (name -> bytes); ``cut`` names are sent with their full length announced and half the
    bytes; ``requests`` counts GETs."""

    def __init__(self, files, cut=()):
        self.files, self.cut, self.requests = files, set(cut), []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the base class's name
                name = self.path.rsplit("/", 1)[-1]
                owner.requests.append(name)
                if name not in owner.files:
                    self.send_error(404)
                    return
                body = owner.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in owner.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return zoo_archive(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def served(archive, tmp_path, monkeypatch):
    server = Server({ENTRY.archive: archive})
    monkeypatch.setenv("DEEPLAB_MOBILE_ZOO_MIRROR", server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEEPLAB_MOBILE_OFFLINE", raising=False)
    yield server
    server.close()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_name_downloads_converts_once_and_is_reused(served, archive, tmp_path):
    path = zoo.fetch(NAME, progress=False)
    assert path == zoo.cache_dir() / f"{NAME}.pt" and served.requests == [ENTRY.archive]
    (tmp_path / "direct").mkdir()
    (tmp_path / "direct" / ENTRY.archive).write_bytes(archive)
    convert_checkpoint(tmp_path / "direct" / ENTRY.archive, tmp_path / "direct.pt", width=0.5)
    model, info = load_model_file(path)
    direct, _ = load_model_file(tmp_path / "direct.pt")
    assert same_weights(model.state_dict(), direct.state_dict())
    assert info.config["width"] == 0.5 and len(info.classes) == 21 and info.classes[0] == "background"
    record = (zoo.cache_dir() / f"{NAME}.json").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in record
    assert zoo.fetch(NAME) == path and served.requests == [ENTRY.archive]  # the cache: no second request
    built = build_model(weights=NAME)
    assert same_weights(built.state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="the network is the weights' own; width=1.5"):
        build_model(width=1.5, weights=NAME)
    segmenter = Segmenter.from_pretrained(NAME)
    assert segmenter.classes == info.classes and segmenter.mean == (0.5, 0.5, 0.5)


def test_a_cache_entry_that_fails_its_check_is_converted_again_never_used(served):
    path = zoo.fetch(NAME, progress=False)
    want = load_model_file(path)[0].state_dict()

    def recorded():
        return hashlib.sha256(path.read_bytes()).hexdigest() in (zoo.cache_dir() / f"{NAME}.json").read_text()

    good = path.read_bytes()
    path.write_bytes(good[:-10] + b"0123456789")  # the same size, other bytes
    assert not recorded()
    assert zoo.fetch(NAME, progress=False) == path and recorded()
    assert same_weights(load_model_file(path)[0].state_dict(), want)
    assert served.requests == [ENTRY.archive]  # converted again from the cached archive
    (zoo.cache_dir() / ENTRY.archive).unlink()
    path.write_bytes(b"torn")
    assert zoo.fetch(NAME, progress=False) == path and recorded() and len(served.requests) == 2


def test_a_download_cut_short_leaves_no_cache_entry(archive, tmp_path, monkeypatch):
    server = Server({ENTRY.archive: archive}, cut={ENTRY.archive})
    monkeypatch.setenv("DEEPLAB_MOBILE_ZOO_MIRROR", server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    try:
        with pytest.raises(zoo.ZooError, match=r"cut short|IncompleteRead"):
            zoo.fetch(NAME, progress=False)
    finally:
        server.close()
    left = list((tmp_path / "torch").rglob("*")) if (tmp_path / "torch").exists() else []
    assert not [p for p in left if p.is_file()]


def test_an_archive_that_is_not_the_entry_s_is_named_and_not_kept(tmp_path, monkeypatch):
    files = {ENTRY.archive: zoo_archive(tmp_path / "empty", with_checkpoint=False)}
    server = Server(files)
    monkeypatch.setenv("DEEPLAB_MOBILE_ZOO_MIRROR", server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    try:
        with pytest.raises(zoo.ZooError, match="holds no TensorFlow checkpoint"):
            zoo.fetch(NAME, progress=False)
        files[ENTRY.archive] = zoo_archive(tmp_path / "wide", width=1.0)  # a checkpoint of another width
        with pytest.raises(zoo.ZooError, match="width-1 MobileNetV2, not the width 0.5"):
            zoo.fetch(NAME, progress=False)
    finally:
        server.close()
    assert not any(p.is_file() for p in (tmp_path / "torch").rglob("*"))


def test_offline_fails_at_once_with_the_url_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    server = Server({})
    url = server.url
    server.close()  # nothing listens there now: a refused connection
    monkeypatch.setenv("DEEPLAB_MOBILE_ZOO_MIRROR", url)
    start = time.monotonic()
    with pytest.raises(zoo.ZooError, match=r"cannot download http://127\.0\.0\.1.*put it at .*or convert it"):
        zoo.fetch(NAME, progress=False)
    assert time.monotonic() - start < 10
    monkeypatch.setenv("DEEPLAB_MOBILE_OFFLINE", "1")
    with pytest.raises(zoo.ZooError, match="DEEPLAB_MOBILE_OFFLINE=1"):
        zoo.fetch(NAME, progress=False)
    with pytest.raises(zoo.ZooError, match="not a published weights name; the names: deeplabv3_mnv2_pascal_trainaug"):
        zoo.fetch("deeplabv3_mnv3")


def test_a_read_only_cache_is_named_and_nothing_is_written(served, tmp_path):
    cache = tmp_path / "torch"
    cache.mkdir()
    with read_only(cache):
        with pytest.raises(ValueError, match="the weights cache .* cannot be written"):
            zoo.fetch(NAME, progress=False)
    assert not any(cache.rglob("*")) and served.requests == []


def test_the_command_line_takes_a_name(served, tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 120, 30)).save(tmp_path / "photo.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deeplab_mobile",
            "predict",
            str(tmp_path / "photo.jpg"),
            "--weights",
            NAME,
            "--out",
            str(tmp_path / "masks"),
            "--no-progress",
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "masks" / "photo.png").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "deeplab_mobile", "weights"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f"{NAME}  (cached)" in listed and "deeplabv3_mnv2_pascal_trainaug  (not downloaded)" in listed


def test_the_model_zoo_page_shows_the_registry_s_table():  # its Params and MAdds: tests/test_complexity.py
    page = (ROOT / "docs" / "model_zoo.md").read_text()
    assert zoo.markdown_table() in page
