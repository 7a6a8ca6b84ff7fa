"""Serve the built page (examples/web/dist) against the local stack, on http://127.0.0.1:5173.

    .venv/bin/python examples/web/serve.py --stack     # start a local stack here, then serve the page
    .venv/bin/python examples/web/serve.py             # use a running stack's .jobrelay/local.json

Open http://127.0.0.1:5173/ and sign in as alice@example.com (http://127.0.0.1:5173/?uid=bob prefills
bob@example.com); every local user's password is `jobrelay-local`. The users live in the stack's Auth
emulator: serve.py creates alice and bob (and, with --admin, gives them the admin claim) there first.
config.json is made per request from the stack's addresses (no credential in it). 127.0.0.1:5173 and
localhost:5173 are in dev's `app_origins`, so the API answers CORS for the page without any change to
infra/.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import tempfile
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DIST = HERE / "dist"


def page_config(local: dict[str, Any], env: str, uid: str) -> dict[str, Any]:
    """What the page needs: the API, the env's project, the Auth and Firestore emulators, whom to prefill."""
    from jobrelay.local import authemu

    return {
        "api": local["api"],
        "env": env,
        "firebase": {"projectId": local["envs"][env]["project"], "apiKey": "local-emulator"},
        "emulator": {"auth": local["auth"]["host"], "firestore": local["firestore"]},
        "email": authemu.default_email(uid),
    }


def make_users(local: dict[str, Any], env: str, uids: list[str], admin: bool) -> None:
    """The page's users in the stack's Auth emulator (verified email, the local password)."""
    from jobrelay.local import authemu

    claims = authemu.claims_for(admin=admin)
    for uid in uids:
        authemu.ensure_user(local["auth"]["host"], local["envs"][env]["project"], uid, claims=claims)


def handler(config_for: Callable[[str], dict[str, Any]]) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/config.json":
                super().do_GET()
                return
            uid = parse_qs(url.query).get("uid", [""])[0]
            body = json.dumps(config_for(uid)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(local: dict[str, Any], args: argparse.Namespace) -> None:
    if args.env not in local["envs"]:
        sys.exit(f"the stack does not serve env {args.env!r}; it serves {', '.join(local['envs'])}")
    if not isinstance(local.get("auth"), dict):
        sys.exit("this stack runs no Auth emulator (an older local.json): restart it with `jobrelay dev up`")
    if local["auth"]["project"] != local["envs"][args.env]["project"]:
        # The Firebase JS SDK signs in with an API key, which the emulator maps to its default project.
        sys.exit(
            f"browser sign-in on the local Auth emulator lands in {local['auth']['project']}, not env "
            f"{args.env}'s {local['envs'][args.env]['project']}: serve --env dev"
        )
    make_users(local, args.env, sorted({args.uid, "alice", "bob"}), args.admin)

    def config_for(uid: str) -> dict[str, Any]:
        return page_config(local, args.env, uid or args.uid)

    server = ThreadingHTTPServer((args.host, args.port), functools.partial(handler(config_for), directory=str(DIST)))
    base = f"http://{args.host}:{args.port}/"
    print(
        f"jobrelay web client ({args.env}): {base} (alice@example.com), {base}?uid=bob (bob@example.com); "
        "password jobrelay-local  (Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", action="store_true", help="start a local stack (api, worker, deadletter)")
    parser.add_argument(
        "--state", type=Path, default=REPO / ".jobrelay" / "local.json", help="a running stack's local.json"
    )
    parser.add_argument("--env", default="dev")
    parser.add_argument("--uid", default="alice", help="the user to prefill when the URL names none (?uid=)")
    parser.add_argument("--admin", action="store_true", help="give the page's users the admin claim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5173, help="5173 is in dev's app_origins")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the stack on SIGTERM too

    if not (DIST / "index.html").exists():
        sys.exit(f"{DIST} is not built: run examples/web/install.sh (or `npm run build` in {HERE})")
    if not args.stack:
        if not args.state.exists():
            sys.exit(f"{args.state} not found: start a stack (`jobrelay dev up`) or pass --stack")
        serve(json.loads(args.state.read_text()), args)
        return

    from jobrelay.local.stack import Stack, StackOptions

    state = Path(tempfile.mkdtemp(prefix="jobrelay-web-"))
    stack = Stack(StackOptions(state_dir=state, tick_seconds=0, services=("api", "worker", "deadletter")))
    stack.start()
    try:
        serve(json.loads((state / "local.json").read_text()), args)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
