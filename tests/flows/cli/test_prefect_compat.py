"""flows/cli/prefect_compat.py's reach past Prefect's public API: each test fails loudly when
the internal it relies on changes, naming it."""

from __future__ import annotations

import os
import threading

from prefect.settings import get_current_settings

from flows.cli.prefect_compat import process_api_url


def _in_a_new_thread() -> str | None:
    """The API URL a thread that copies no context sees (our pools, Prefect's workers)."""
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(get_current_settings().api.url))
    thread.start()
    thread.join(timeout=60)
    return seen[0]


def test_process_api_url_reaches_threads_that_copy_no_context(monkeypatch):
    import prefect.context

    assert callable(getattr(prefect.context, "refresh_global_settings_context", None)), (
        "prefect.context.refresh_global_settings_context is gone: process_api_url needs another"
        " way to change Prefect's process-wide settings"
    )
    assert hasattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT"), (
        "prefect.context.GLOBAL_SETTINGS_CONTEXT is gone: process_api_url cannot put it back"
    )
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    before = _in_a_new_thread()
    url = "http://127.0.0.1:9/api"
    with process_api_url(url):
        assert os.environ["PREFECT_API_URL"] == url
        assert _in_a_new_thread() == url, (
            "Prefect's global settings context no longer follows the environment after"
            " refresh_global_settings_context()"
        )
    assert "PREFECT_API_URL" not in os.environ
    assert _in_a_new_thread() == before
