"""syrcad's model server: each bot's newest trained model, for frontends that pull theirs.

Rasa polls `GET /bots/NAME/model` every `wait_time_between_pulls` seconds with the ETag of the
model it runs in `If-None-Match` (rasa.core.agent._pull_model_and_fingerprint): the answer is 304
while that is still the newest, 204 while the bot has no model, else the newest model file with
its ETag and its file name. A bot's models folder is mounted at /projects/NAME/MODELS (what its
frontends would load from the shared project); `syrcad train` writing a model there publishes it.

Standard library only: it runs in the Rasa image, which the hosts already have.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

MODEL_PATH = re.compile(r"^/bots/([a-z][a-z0-9]{0,15})/model$")


def newest_model(folder: str) -> str | None:
    """The newest complete model file in `folder` (None if there is none yet)."""
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".tar.gz")]
    except FileNotFoundError:
        return None
    paths = [os.path.join(folder, n) for n in names]
    return max(paths, key=os.path.getmtime, default=None)


def etag(path: str) -> str:
    """Changes with the file: its name, size and modification time."""
    found = os.stat(path)
    return f'"{os.path.basename(path)}-{found.st_size}-{found.st_mtime_ns}"'


class Models(BaseHTTPRequestHandler):
    folders: ClassVar[dict[str, str]] = {}  # bot → its models folder (set once, at start)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(HTTPStatus.OK)
            return
        matched = MODEL_PATH.match(self.path.split("?")[0])
        folder = self.folders.get(matched[1]) if matched else None
        if folder is None:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        path = newest_model(folder)
        if path is None:
            self._answer(HTTPStatus.NO_CONTENT)
            return
        tag = etag(path)
        if self.headers.get("If-None-Match") == tag:
            self._answer(HTTPStatus.NOT_MODIFIED, {"ETag": tag})
            return
        with open(path, "rb") as model:
            size = os.fstat(model.fileno()).st_size
            self._answer(
                HTTPStatus.OK,
                {
                    "ETag": tag,
                    "filename": os.path.basename(path),
                    "Content-Type": "application/gzip",
                    "Content-Length": str(size),
                },
                end=False,
            )
            shutil.copyfileobj(model, self.wfile)

    def _answer(
        self, status: HTTPStatus, headers: dict[str, str] | None = None, end: bool = True
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if end:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        # One line per request on stdout (the container's log), without the client's address.
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bot", action="append", default=[], metavar="NAME=FOLDER")
    options = parser.parse_args()
    Models.folders = dict(pair.split("=", 1) for pair in options.bot)
    ThreadingHTTPServer(("", options.port), Models).serve_forever()


if __name__ == "__main__":
    main()
