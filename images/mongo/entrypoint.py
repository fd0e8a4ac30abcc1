"""Start SecantusDB the way the official mongo image starts mongod.

With MONGO_INITDB_ROOT_USERNAME/PASSWORD set, the first start creates that user in `admin`
on a loopback-only server, then every start serves 0.0.0.0:27017 with authentication on.
"""

import os
import pathlib
import subprocess
import sys
import time

import pymongo

DATA = pathlib.Path("/data/db")
MARKER = DATA / ".syrcad-users-created"
# --standalone: a plain mongod answers as a standalone server, not as a replica-set primary
# advertising 0.0.0.0, which clients outside the container could not follow.
SERVER = ["secantusd-py", "--standalone", "--port", "27017", "--storage-path", str(DATA)]


def create_root_user(username: str, password: str) -> None:
    server = subprocess.Popen([*SERVER, "--host", "127.0.0.1"])
    try:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            "127.0.0.1", 27017, serverSelectionTimeoutMS=30_000
        )
        client.admin.command("ping")
        client.admin.command("createUser", username, pwd=password, roles=["root"])
        client.close()
        MARKER.touch()
    finally:
        server.terminate()
        server.wait(timeout=30)
    time.sleep(0.5)


def main() -> None:
    username = os.environ.get("MONGO_INITDB_ROOT_USERNAME")
    password = os.environ.get("MONGO_INITDB_ROOT_PASSWORD")
    password_file = os.environ.get("MONGO_INITDB_ROOT_PASSWORD_FILE")  # as the official image
    if password_file and not password:
        password = pathlib.Path(password_file).read_text(encoding="utf-8").strip()
    if username and password and not MARKER.exists():
        create_root_user(username, password)
    auth = ["--auth"] if MARKER.exists() else []
    sys.stdout.flush()
    os.execvp(SERVER[0], [*SERVER, "--host", "0.0.0.0", *auth, *sys.argv[1:]])


if __name__ == "__main__":
    main()
