"""`python -m rlxf.data fetch`: downloads checked against a local HTTP server (127.0.0.1, in a thread) serving small
files: success, a wrong sha256, a 404, a connection cut short (no half file left), a complete file skipped; then a
whole fetch of the fixture corpora served as the real sources would be, hydrated from the folder it filled."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from rlxf.data import fetch as fetching
from rlxf.data import hydrate, read_table, write_fixtures
from rlxf.data.__main__ import main
from rlxf.data.files import DataError
from rlxf.data.fixtures import hh_records

BODY = b"Socrates: what is justice?\n" * 100


class Server:
    """Files served by path; `/cut/...` announces more bytes than it sends, then closes; `hits` counts requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {"/book.txt": BODY}
        self.hits: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                served.hits.append(self.path)
                body = served.files.get(self.path.removeprefix("/cut"))
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path.startswith("/cut") else body)
                if self.path.startswith("/cut"):
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def server():
    served = Server()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def _only(folder: Path) -> list[str]:
    """Every file under `folder` (temporary files included), relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_download_is_written_with_its_size_and_hash_checked(server, tmp_path):
    item = fetching.Download(f"{server.url}/book.txt", "plato/Book.txt", sha256=hashlib.sha256(BODY).hexdigest(),
                             size=len(BODY))
    assert fetching.download(item, tmp_path) == "downloaded"
    assert (tmp_path / "plato" / "Book.txt").read_bytes() == BODY
    assert _only(tmp_path) == ["plato/Book.txt"]


def test_a_wrong_hash_or_size_leaves_no_file(server, tmp_path):
    wrong = fetching.Download(f"{server.url}/book.txt", "plato/Book.txt", sha256="0" * 64)
    with pytest.raises(DataError, match=r"book.txt: the download has sha256 [0-9a-f]{64}, expected 0{64}"):
        fetching.download(wrong, tmp_path)
    short = fetching.Download(f"{server.url}/book.txt", "plato/Book.txt", size=len(BODY) + 1)
    with pytest.raises(DataError, match=rf"has {len(BODY):,} bytes, expected {len(BODY) + 1:,}"):
        fetching.download(short, tmp_path)
    assert _only(tmp_path) == []


def test_a_404_names_the_url_and_leaves_no_file(server, tmp_path):
    with pytest.raises(DataError, match=r"/missing.txt: HTTP 404"):
        fetching.download(fetching.Download(f"{server.url}/missing.txt", "mona/x.csv"), tmp_path)
    assert _only(tmp_path) == []


def test_a_download_cut_short_leaves_no_half_file(server, tmp_path):
    item = fetching.Download(f"{server.url}/cut/book.txt", "plato/Book.txt")
    with pytest.raises(DataError, match=r"cut/book.txt: the (connection ended after|download failed)"):
        fetching.download(item, tmp_path)
    assert _only(tmp_path) == []


def test_a_complete_file_is_skipped_and_a_wrong_one_fetched_again(server, tmp_path):
    target = tmp_path / "plato" / "Book.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(BODY)
    item = fetching.Download(f"{server.url}/book.txt", "plato/Book.txt", sha256=hashlib.sha256(BODY).hexdigest())
    assert fetching.download(item, tmp_path) == "skipped (already there)"
    assert server.hits == []
    target.write_bytes(b"an older copy")
    assert fetching.download(item, tmp_path) == "downloaded"
    assert target.read_bytes() == BODY and server.hits == ["/book.txt"]
    assert fetching.download(item, tmp_path, force=True) == "downloaded" and len(server.hits) == 2


def _aclimdb(reviews: dict[str, list[tuple[str, int, str]]]) -> bytes:
    """A tar.gz in the aclImdb layout: aclImdb/<split>/<pos|neg>/<id>_<rating>.txt."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, rows in reviews.items():
            for number, (polarity, rating, text) in enumerate(rows):
                data = text.encode("utf-8")
                info = tarfile.TarInfo(f"aclImdb/{split}/{polarity}/{number}_{rating}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("aclImdb/README")
        tar.addfile(readme, io.BytesIO(b""))
    return buffer.getvalue()


def test_fetch_fills_the_layout_hydrate_reads(server, tmp_path, monkeypatch):
    """The fixture corpora served as the sources would serve them; hydrate builds all five tables from the result."""
    fixtures = write_fixtures(tmp_path / "fixtures")
    books = {path.stem: 9000 + k for k, path in enumerate(sorted((fixtures / "plato").glob("*.txt")))}
    for title, number in books.items():
        server.files[f"/gutenberg/{number}/pg{number}.txt"] = (fixtures / "plato" / f"{title}.txt").read_bytes()
    server.files["/house.csv"] = (fixtures / "political/house_tweets_2018.csv").read_bytes()
    server.files["/mona.csv"] = (fixtures / "mona/MONA_From2002_dev.csv").read_bytes()
    reviews = {"train": [("pos", 9, "A wonderful film."), ("neg", 2, "Dreadful.")],
               "test": [("pos", 8, "I loved it."), ("neg", 1, "Awful."), ("pos", 10, "Best <br />ever.")]}
    server.files["/aclImdb_v1.tar.gz"] = _aclimdb(reviews)
    hh = hh_records()
    monkeypatch.setattr("datasets.load_dataset", lambda name, **kwargs: DatasetDict(
        {"test": Dataset.from_list(hh)}))
    monkeypatch.setattr(fetching, "PLATO_BOOKS", books)
    monkeypatch.setattr(fetching, "IMDB_ROWS", {"train": 2, "test": 3})
    monkeypatch.setattr(fetching, "HH_ROWS", len(hh))
    data = tmp_path / "fetched"
    mona_sha = hashlib.sha256(server.files["/mona.csv"]).hexdigest()
    argv = ["fetch", "--to", str(data), "--imdb-url", f"{server.url}/aclImdb_v1.tar.gz", "--gutenberg-url",
            f"{server.url}/gutenberg", "--political-url", f"{server.url}/house.csv", "--mona-url",
            f"{server.url}/mona.csv", "--mona-sha256", mona_sha]
    assert main(argv) == 0
    assert _only(data) == sorted(["hh-rlhf/harmless-base_test.jsonl.gz", "imdb/imdb_test.parquet",
                                  "imdb/imdb_train.parquet", "mona/MONA_From2002_dev.csv",
                                  "political/house_tweets_2018.csv", *(f"plato/{t}.txt" for t in books)])
    manifest = hydrate(data, tmp_path / "tables")
    assert set(manifest["tables"]) == {"political", "plato_turns", "mona", "imdb", "hh_harmless"}
    imdb = read_table(tmp_path / "tables", "imdb")
    assert sorted(imdb.rating) == [1, 2, 8, 9, 10] and imdb.groupby("split").size().to_dict() == {"test": 3, "train": 2}
    assert len(read_table(tmp_path / "tables", "hh_harmless")) == len(hh)
    hits = len(server.hits)
    report = fetching.fetch(data, imdb_url=f"{server.url}/aclImdb_v1.tar.gz", gutenberg_url=f"{server.url}/gutenberg",
                            political_url=f"{server.url}/house.csv", mona_url=f"{server.url}/mona.csv")
    assert len(server.hits) == hits, "a second fetch downloads nothing that is already there"
    assert report["imdb"] == report["mona"] == "skipped (already there)"


def test_fetch_names_what_it_cannot_do(server, tmp_path, monkeypatch, capsys):
    report = fetching.fetch(tmp_path, sources=["mona"])
    assert report["mona"].startswith("not fetched: give mona_url") and _only(tmp_path) == []
    server.files["/aclImdb_v1.tar.gz"] = _aclimdb({"train": [("pos", 9, "Fine.")], "test": [("neg", 1, "Bad.")]})
    with pytest.raises(DataError, match=r"/aclImdb_v1.tar.gz: 1 train reviews .*; expected 25,000"):
        fetching.fetch(tmp_path, sources=["imdb"], imdb_url=f"{server.url}/aclImdb_v1.tar.gz")
    assert _only(tmp_path) == [], "no archive and no table left behind"
    with pytest.raises(DataError, match=r"sources: got \['tweets'\]"):
        fetching.fetch(tmp_path, sources=["tweets"])
    with pytest.raises(DataError, match=r"plato: Crito has e-book number 0"):
        fetching.plato_downloads({"Crito": 0})
    assert main(["fetch", "--to", str(tmp_path), "--sources", "plato", "--plato", "Ion"]) == 1
    assert "--plato 'Ion': expected TITLE=NUMBER" in capsys.readouterr().err
    assert main(["fetch", "--to", str(tmp_path), "--sources", "political", "--political-url",
                 f"{server.url}/nothing.csv"]) == 1
    assert "nothing.csv: HTTP 404" in capsys.readouterr().err
