"""What each Ray worker of the app runs before its first task (Ray's worker_process_setup_hook).

``ray.init(runtime_env=RUNTIME_ENV)`` sets it for every worker of the job: Serve's controller
and proxy when this job starts Serve, and every replica. Ray runs the hook only from the job's
runtime_env, not from a deployment's own.

Serve imports pandas whenever it is installed, only to register a JSON encoder for DataFrames
that an HTTP route might return (``ray.serve._private.utils``), and this app's routes return
none. Gradio depends on pandas, so it is installed, and each of Serve's processes held about
25 MB of it that nothing used: 150 MB of the app's memory. Now only the page, whose Gradio
imports pandas itself, holds it.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.setup"}
SERVE_UTILS = "ray.serve._private.utils"  # the module of Serve that imports pandas


def setup() -> None:
    """The hook: runs once in each new worker process of the job."""
    import_serve_without_pandas()


def import_serve_without_pandas() -> None:
    """Imports Serve's utilities with pandas hidden, so that Serve goes without its DataFrame
    encoder and never imports pandas. Code that imports pandas later gets it as usual; a
    process that already holds pandas, or Serve, is left as it is."""
    if "pandas" in sys.modules or SERVE_UTILS in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` fails meanwhile
    try:
        __import__(SERVE_UTILS)
    except Exception:  # never stops a worker: Serve then imports pandas there, as before
        logger.exception("Could not import Serve without pandas; it will hold pandas")
    finally:
        del sys.modules["pandas"]
