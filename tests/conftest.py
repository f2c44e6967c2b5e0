"""Shared test fixtures: a temporary data root, a Keras cache that is never the home folder,
and one real (temporary) Prefect server for the whole session."""

from __future__ import annotations

import os
import tempfile

# Set before Prefect, Keras or TensorFlow are imported anywhere in the test session.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="pixelpipe-keras-home-")
os.environ.pop("PIXELPIPE_DATA_DIR", None)
os.environ["PIXELPIPE_OFFLINE"] = "1"  # no test downloads weights (a test may opt back in)

import pytest


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh data root, also set as $PIXELPIPE_DATA_DIR so defaults land in it."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """A real temporary Prefect server (SQLite) for every flow test; entered once (~10 s).
    Without flow-run heartbeats, as ad-hoc CLI runs (flows.cli.session.no_heartbeats): each
    would add a second to every flow run."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.cli.session import no_heartbeats

    with prefect_test_harness(server_startup_timeout=120), no_heartbeats():
        yield
