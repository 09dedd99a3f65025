"""The workers' setup hook: Serve's processes go without pandas, and pandas still imports."""

import subprocess
import sys

from tests.replicas import ask, replica_names, serve_actor_names


def run_python(script: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_serve_imported_after_the_hook_holds_no_pandas_and_pandas_still_imports():
    script = (
        "import sys; from serving.worker_setup import setup; setup(); "
        "from ray import serve; before = 'pandas' in sys.modules; "
        "import pandas; print(before, pandas.DataFrame({'a': [1]}).shape)"
    )
    assert run_python(script) == "False (1, 1)"


def test_a_process_that_already_holds_pandas_keeps_serves_dataframe_encoder():
    script = (
        "import pandas; from serving.worker_setup import setup; setup(); "
        "from ray.serve._private.utils import serve_encoders; "
        "print(pandas.DataFrame in serve_encoders)"
    )
    assert run_python(script) == "True"


def holds_pandas() -> bool:
    return "pandas" in sys.modules


def test_only_the_page_holds_pandas_among_the_apps_serve_processes(tiny_app: str):
    """The hook reaches every worker of the job that started Serve (conftest, as run.py does):
    the controller, the proxy and each replica. The page's Gradio imports pandas itself."""
    serve_actors = sorted(serve_actor_names("SERVE_CONTROLLER_ACTOR", "SERVE_PROXY_ACTOR"))
    replicas = {
        deployment: replica_names("api", deployment)
        for deployment in ("Router", "LanguageDetector", "Translator", "ChatModel")
    }
    assert len(serve_actors) == 2 and all(len(names) == 1 for names in replicas.values())
    for name in serve_actors + [name for names in replicas.values() for name in names]:
        assert not ask(name, holds_pandas), name
    (page,) = replica_names("ui", "ChatUI")
    assert ask(page, holds_pandas)
