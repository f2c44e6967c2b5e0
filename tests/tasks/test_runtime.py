"""Progress artifact updates leave the loop at once: a background thread sends the latest
value of each artifact, and a loop waits only for its final 100%."""

import contextvars
import threading
import uuid

from tasks import runtime


def test_a_loop_does_not_wait_on_the_api_and_only_the_latest_value_goes_out(monkeypatch):
    sent, release, first_sent = [], threading.Event(), threading.Event()

    def update(artifact, progress):  # the API, stuck until released
        sent.append((artifact, progress))
        first_sent.set()
        release.wait(10)

    monkeypatch.setattr(runtime, "update_progress_artifact", update)
    updates, artifact = runtime.ArtifactUpdates(), uuid.uuid4()
    context = contextvars.copy_context()
    updates.send(artifact, context, 10.0)
    assert first_sent.wait(10)  # the first value is being sent, and stuck
    for progress in (20.0, 30.0, 40.0):  # returns while the API hangs
        updates.send(artifact, context, progress)
    assert sent == [(artifact, 10.0)]
    release.set()
    assert updates.finish(artifact, context)  # 100% sent, after everything before it
    values = [progress for _, progress in sent]
    # 20 and 30 were replaced while waiting; 40 went out unless 100 replaced it first.
    assert values in ([10.0, 40.0, 100.0], [10.0, 100.0])


def test_the_final_wait_is_bounded_and_a_failing_api_stops_nothing(monkeypatch):
    def update(artifact, progress):
        raise RuntimeError("the API is down")

    monkeypatch.setattr(runtime, "update_progress_artifact", update)
    updates, artifact = runtime.ArtifactUpdates(), uuid.uuid4()
    assert updates.finish(artifact, contextvars.copy_context(), timeout=10)
    stuck = threading.Event()
    monkeypatch.setattr(runtime, "update_progress_artifact", lambda a, progress: stuck.wait(10))
    other = uuid.uuid4()
    assert not updates.finish(other, contextvars.copy_context(), timeout=0.2)
    stuck.set()
