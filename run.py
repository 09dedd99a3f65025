"""Start the whole app: `python run.py [--profile P] [--config FILE] [--host H] [--port N]`.

Uses the Ray cluster at RAY_ADDRESS when set, else starts a local one. Ctrl-C shuts it down.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
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
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print Ray's and Serve's own logs here (they always go to the log folder)",
    )
    return parser.parse_args(argv)


def log_folder(address: str | None) -> str:
    """Where Ray writes every process's log: the replicas', Serve's and Ray's own."""
    latest = "/tmp/ray/session_latest/logs"  # Ray's default, on every node of its cluster
    if address:
        return f"{latest} on the cluster's nodes"
    try:  # this session's own folder, which stays valid after another session starts
        from ray._private.worker import global_worker

        return global_worker.node.get_logs_dir_path()
    except Exception:  # private API: fall back to Ray's documented link
        return latest


def deploy_failure(error: Exception) -> str:
    """What went wrong, in a line: the failed deployment's name and the last line of its
    replica's traceback (the exception itself), from ``serve.status()``."""
    from ray import serve

    found = []
    try:
        applications = serve.status().applications.values()
    except Exception:  # the controller itself is gone: the error is all there is to say
        applications = []
    for application in applications:
        for name, deployment in application.deployments.items():
            if deployment.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                lines = [line.strip() for line in deployment.message.splitlines() if line.strip()]
                # The exception's own line; this app's errors need no module path to be read.
                last = re.sub(r"^serving\.errors\.\w+: ", "", lines[-1]) if lines else ""
                found.append(f"{name}: {last or deployment.status}")
    text = "; ".join(found) or str(error).strip()
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()  # the wait a person sees: imports and checks included
    args = parse_args(argv)
    # Quiet by default: warnings and errors, and the steps below. --verbose: everything.
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
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

    from serving.worker_setup import RUNTIME_ENV, import_serve_without_pandas

    import_serve_without_pandas()  # this driver, as each worker does (serving/worker_setup.py)
    import ray
    from ray import serve

    from serving.app import build_apps

    address = os.environ.get("RAY_ADDRESS")
    # The dashboard runs code for whoever reaches it: keep it off (only Serve's port is public).
    # Without it Ray still runs its metrics agent, which serves Prometheus on metrics_port.
    options = {} if address else {"_metrics_export_port": config.http.metrics_port}
    print("Starting Ray...", flush=True)
    ray.init(
        address=address or "local",  # never attach to a cluster by accident
        include_dashboard=False,
        runtime_env=RUNTIME_ENV,  # the workers' setup hook: Serve's processes go without pandas
        # The replicas', Serve's and Ray's own logs stay in the log folder unless --verbose:
        # Serve's proxy alone logs kilobytes of routes per line.
        log_to_driver=args.verbose,
        logging_level=logging.INFO if args.verbose else logging.ERROR,
        **options,
    )
    logs = log_folder(address)
    print(f"  [{time.monotonic() - started:4.0f} s] Ray is up; its logs: {logs}", flush=True)
    quiet_serve(args.verbose)
    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    shown_host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    url = f"http://{shown_host}:{config.http.port}/"
    print("Starting the deployments...", flush=True)
    try:
        for app in build_apps(config):
            serve.run(app.app, name=app.name, route_prefix=app.route_prefix, blocking=False)
            print(f"  [{time.monotonic() - started:4.0f} s] {app.name} ready at {app.route_prefix}")
            if app.name == "ui":
                print(f"  The page is up at {url} (it says when the models are ready)", flush=True)
    # Serve raises RuntimeError for a deployment that failed to start (its replica's error is in
    # serve.status()); anything else on the way (a lost controller, a timeout) ends here too.
    except Exception as exc:
        print(f"error: a deployment failed to start. {deploy_failure(exc)}", file=sys.stderr)
        print(f"The whole report is in the logs: {logs}", file=sys.stderr)
        shut_down(address)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the models load: stop, without a traceback
        print("Interrupted: shutting down...", flush=True)
        shut_down(address)
        return 130
    print(f"Ready in {time.monotonic() - started:.0f} s: open {url} (Ctrl-C to stop)", flush=True)
    if not address:
        print(f"Metrics for Prometheus: http://{shown_host}:{config.http.metrics_port}/metrics")
    from serving.security import LOOPBACK, access_token

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
    shut_down(address)
    return 0


def shut_down(address: str | None) -> None:
    """On someone's cluster, remove Serve and its apps from it; a local cluster goes whole (its
    Serve with it: shutting Serve down first only makes Ray log the controller's retries)."""
    import ray
    from ray import serve

    if address:
        serve.shutdown()
    ray.shutdown()


def quiet_serve(verbose: bool) -> None:
    """Serve's own messages in this process ("Started Serve", "Application ... is ready") are
    steps that this script already prints; keep its warnings and errors."""
    if not verbose:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
