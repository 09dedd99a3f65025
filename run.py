"""Start the whole app: `python run.py [--profile P] [--config FILE] [--host H] [--port N]`.

Uses the Ray cluster at RAY_ADDRESS when set, else starts a local one. Ctrl-C shuts it down.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from serving.config import available_profiles, load_config
from serving.errors import ChatServiceError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Multilingual streaming chat on Ray Serve.")
    parser.add_argument(
        "--profile", choices=available_profiles(), help="model profile (default: offline)"
    )
    parser.add_argument("--config", help="YAML file of settings on top of the profile")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000)")
    parser.add_argument(
        "--metrics-port", type=int, help="Ray's Prometheus endpoint port (default 8080)"
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="also open a public Gradio share link to the page (needs internet access)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    flags = (("host", args.host), ("port", args.port), ("metrics_port", args.metrics_port))
    http = {key: value for key, value in flags if value}
    try:
        config = load_config(args.profile, args.config, {"http": http} if http else None)
        from serving.locate import check_available  # imports torch: after the cheap checks

        for role, spec in config.models().items():
            try:
                check_available(spec)
            except ChatServiceError as exc:
                raise ChatServiceError(
                    f"Profile {config.profile!r}, model for {role}: {exc.message}\n"
                    "Use the default offline profile (`make run`), or point "
                    f"{role}.model.source at a local folder in a --config file."
                ) from None
    except ChatServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    if args.share and config.security.auth == "auto":  # a public link: credentials, always
        security = config.security.model_copy(update={"auth": "on"})
        config = config.model_copy(update={"security": security})

    import ray
    from ray import serve

    from serving.app import build_apps

    address = os.environ.get("RAY_ADDRESS")
    # The dashboard runs code for whoever reaches it: keep it off (only Serve's port is public).
    # Without it Ray still runs its metrics agent, which serves Prometheus on metrics_port.
    options = {} if address else {"_metrics_export_port": config.http.metrics_port}
    ray.init(
        address=address or "local",  # never attach to a cluster by accident
        include_dashboard=False,
        logging_level=logging.WARNING,
        **options,
    )
    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    started = time.monotonic()
    shown_host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    url = f"http://{shown_host}:{config.http.port}/"
    print("Starting the deployments...", flush=True)
    for app in build_apps(config):
        serve.run(app.app, name=app.name, route_prefix=app.route_prefix, blocking=False)
        print(f"  [{time.monotonic() - started:4.0f} s] {app.name} ready at {app.route_prefix}")
        if app.name == "ui":
            print(f"  The page is up at {url} (it says when the models are ready)", flush=True)
    print(f"Ready in {time.monotonic() - started:.0f} s: open {url} (Ctrl-C to stop)", flush=True)
    if not address:
        print(f"Metrics for Prometheus: http://{shown_host}:{config.http.metrics_port}/metrics")
    from serving.config import LOOPBACK
    from serving.security import access_token

    if token := access_token(config):
        print(f"Access token (the page's password, the API's bearer token): {token}")
    elif config.http.host not in LOOPBACK:
        print(
            f"warning: serving {config.http.host} without credentials (security.auth: off)",
            file=sys.stderr,
        )
    if args.share:
        from ui.tunnel import open_share_link

        try:
            print(f"Public link: {open_share_link(config.http.host, config.http.port)}")
        except ChatServiceError as exc:
            print(f"warning: {exc.message}", file=sys.stderr)
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("Shutting down...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
