"""The terminal bar: rendered under a pseudo-terminal, absent in a pipe, fed by
tasks.runtime.Progress from any thread, never inside a forked worker; plain lines otherwise."""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from flows.cli.progress import BarSink, new_bar
from tasks import runtime
from tasks.runtime import Progress, progress_sink, set_progress_sink
from tests.http_server import SiteServer, picture

REPO = Path(__file__).resolve().parents[3]
LOOP = """
import logging, time
from flows.cli.progress import terminal_progress
from tasks.runtime import Progress
with terminal_progress():
    progress = Progress(40, "counting things")
    for i in range(40):
        time.sleep(0.05)  # the work being measured
        progress.advance()
        if i == 20:
            logging.getLogger("prefect.test").warning("halfway there")
print("done")
"""


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    """Run `args` with stdout and stderr on a pseudo-terminal; everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=env, cwd=REPO)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160", **extra}


def counts_shown(output: str, total: int) -> set[int]:
    return {int(n) for n in re.findall(rf"(\d+)/{total}\b", output)}


def test_the_bar_renders_in_a_terminal_with_several_updates():
    output = run_in_pty([sys.executable, "-c", LOOP], child_env())
    assert "counting things" in output and "done" in output
    shown = counts_shown(output, 40)
    assert len(shown - {0, 40}) >= 3, f"too few live updates: {sorted(shown)}"
    assert "━" in output and re.search(r"\d+\.\d/s", output)  # the bar and the rate
    assert "eta" in output
    assert re.search(r"counting things: 40 in \d+\.\d s", output)  # a finished loop's line
    # A log line during the loop starts on a line of its own (above the bar), not after it.
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert re.search(r"(^|[\r\n])[\d:.]+ \| WARNING +\| prefect.test - halfway there", plain)


def test_no_bar_when_stdout_is_a_pipe():
    done = subprocess.run(
        [sys.executable, "-c", LOOP], env=child_env(), cwd=REPO, capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert "\x1b[" not in done.stderr and "━" not in done.stderr and "/40" not in done.stderr


def test_a_cli_flow_feeds_the_bar_from_its_download_threads(prefect_harness, data_dir):
    """The flow runs in the CLI's process: the scrape's download loop drives the live bar."""
    from prefect.settings import PREFECT_API_URL

    images = {f"i/{n}.png": picture(n, fmt="PNG") for n in range(24)}
    page = "".join(f'<img src="/i/{n}.png">' for n in range(24))
    site = {"p.html": f"<html><body>{page}</body></html>".encode(), **images}
    with SiteServer(root=None, files=site, latency=0.15) as server:
        args = [sys.executable, "-m", "flows.cli", "scrape", "--pages", server.url("p.html")]
        args += ["--label", "dots", "--allow-private-networks", "--data-dir", str(data_dir)]
        args += ["--per-host", "1", "--no-respect-robots"]
        output = run_in_pty(args, child_env(PREFECT_API_URL=PREFECT_API_URL.value()))
    assert "ok 24" in output
    shown = counts_shown(output, 24)
    assert len(shown - {0, 24}) >= 3, f"too few live updates: {sorted(shown)}"
    assert "Downloading 24 image(s) for 'dots': 24 in" in output


def test_the_sink_is_thread_safe_and_each_loop_gets_its_own_bar():
    bar = new_bar(Console(file=io.StringIO(), width=120))
    set_progress_sink(BarSink(bar))
    try:
        loops = [Progress(500, f"loop {n}") for n in range(4)]

        def work(progress: Progress) -> None:
            for _ in range(499):
                progress.advance()

        threads = [threading.Thread(target=work, args=(p,)) for p in loops]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [t.completed for t in bar.tasks] == [499] * 4
        assert [t.description for t in bar.tasks] == [f"loop {n}" for n in range(4)]
        loops[2].advance()  # the last item: the finished loop leaves the live display
        loops[0].advance()
        assert [t.description for t in bar.tasks] == ["loop 1", "loop 3"]
        printed = bar.console.file.getvalue()
        assert "loop 2: 500 in" in printed and "loop 0: 500 in" in printed
        loops[0].finish()  # a loop whose total was an upper bound, finished after all
        assert printed.count("loop 0: 500 in") == 1
        early = Progress(10, "pages")
        early.advance(3)
        early.finish()
        assert [t.description for t in bar.tasks] == ["loop 1", "loop 3"]
        assert "pages: 3 in" in bar.console.file.getvalue()
    finally:
        set_progress_sink(None)


def _sink_in_child(queue) -> None:
    queue.put(progress_sink() is None)


def test_a_forked_worker_has_no_sink():
    set_progress_sink(BarSink(new_bar(Console(file=io.StringIO()))))
    try:
        assert progress_sink() is not None
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_sink_in_child, args=(queue,))
        child.start()
        assert queue.get(timeout=60) is True
        child.join(timeout=60)
    finally:
        set_progress_sink(None)


def test_without_a_bar_progress_is_a_log_line_every_few_seconds(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pixelpipe")
    monkeypatch.setattr(runtime, "LOG_EVERY_S", 3600.0)
    progress = Progress(10, "quiet loop")
    for _ in range(10):
        progress.advance()
    assert not [r for r in caplog.records if "quiet loop" in r.getMessage()]
    monkeypatch.setattr(runtime, "LOG_EVERY_S", 0.0)
    progress = Progress(4, "chatty loop")
    for _ in range(4):
        progress.advance()
    lines = [r.getMessage() for r in caplog.records if "chatty loop" in r.getMessage()]
    assert lines == [f"chatty loop: {n}/4 ({25 * n}%)" for n in range(1, 5)]


def test_a_run_total_without_a_bar_stays_off_the_terminal_and_logs_only_without_one(
    monkeypatch, caplog
):
    """A sharded stage's run-level Progress (bar=False): its shards' bars are the terminal's,
    so it opens none and logs nothing there; without a terminal its lines are the progress."""
    caplog.set_level(logging.INFO, logger="pixelpipe")
    monkeypatch.setattr(runtime, "LOG_EVERY_S", 0.0)
    bar = new_bar(Console(file=io.StringIO(), width=120))
    set_progress_sink(BarSink(bar))
    try:
        total = Progress(4, "whole run", bar=False)
        shard = Progress(4, "one shard")
        total.advance(2)
        shard.advance(2)
        assert [t.description for t in bar.tasks] == ["one shard"]
    finally:
        set_progress_sink(None)
    assert not [r for r in caplog.records if "whole run" in r.getMessage()]
    alone = Progress(4, "whole run", bar=False)
    alone.advance(4)
    lines = [r.getMessage() for r in caplog.records if "whole run" in r.getMessage()]
    assert lines == ["whole run: 4/4 (100%)"]


def test_prefect_log_lines_go_above_the_bar_through_the_handlers_own_filters(capsys):
    """While the bar is live, Prefect's console handlers are stood in for on their loggers
    (logging's public API): the stand-in applies the handler's filters at each record (the
    CLI's quiet filter included) and prints through the bar's console; then they are back."""
    from flows.cli.prefect_compat import prefect_console_handlers
    from flows.cli.progress import terminal_progress

    handlers = prefect_console_handlers()
    assert handlers, "Prefect configured no console handler"
    root = logging.getLogger()
    before = set(root.handlers)

    class NoSecrets(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "secret" not in record.getMessage()

    quiet = NoSecrets()
    try:
        with terminal_progress(enabled=True):
            assert not before & set(handlers) & set(root.handlers)
            for handler in handlers:
                handler.addFilter(quiet)  # added while the bar is live, as the CLI may
            logging.getLogger("prefect.test").warning("shown above the bar")
            logging.getLogger("prefect.test").warning("a secret")
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
    assert set(root.handlers) == before
    err = capsys.readouterr().err
    assert "WARNING | prefect.test - shown above the bar" in err and "secret" not in err
