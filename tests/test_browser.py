"""The chat and dashboard examples in a real browser: Debian's Chromium, headless, driven by Playwright.

Each test runs an example as a subprocess on a free port and loads its page from there. Needs
/usr/bin/chromium (scripts/browser.sh installs it) and the `playwright` package (the `test` extra);
never a downloaded browser. Without them the tests fail, they do not skip. Screenshots go under each
test's tmp_path (the paths are printed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError as error:
    raise ImportError(
        "tests/test_browser.py needs Playwright for Python: pip install 'hyperws[test]' "
        "(it drives /usr/bin/chromium; scripts/browser.sh installs that)"
    ) from error

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 5000  # every browser wait; a tick is 100 ms and a chat message a few ms
START_TIMEOUT = 15.0  # seconds for an example to answer GET /

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser.sh (installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        yield launched
        launched.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"{log_path.stem}.py exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            with urllib.request.urlopen(base, timeout=1.0) as response:
                assert response.status == 200
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{log_path.stem}.py did not answer within {START_TIMEOUT} s")
            time.sleep(0.05)


@contextmanager
def example(name: str, tmp_path: Path) -> Iterator[str]:
    """Runs examples/NAME.py on a free port until the block ends; yields its base URL."""
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), str(port)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(process, base, log_path)
        yield base
    finally:
        process.terminate()  # SIGTERM: the server closes its connections and exits
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    assert process.returncode == 0, f"{name}.py on SIGTERM:\n{log_path.read_text()}"


@contextmanager
def pages(browser: Browser, base: str) -> Iterator[Callable[[], Page]]:
    """Yields a function that opens the example's page in a new tab. At the end, checks that no
    page raised and that nothing was requested from anywhere but the example's server."""
    context = browser.new_context(viewport={"width": 900, "height": 700})
    context.set_default_timeout(WAIT_MS)
    requested: list[str] = []
    errors: list[str] = []
    context.on("request", lambda request: requested.append(request.url))

    def open_page() -> Page:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base)
        return page

    try:
        yield open_page
        assert errors == []
        assert [url for url in requested if not url.startswith(base)] == []
    finally:
        context.close()


def screenshot(page: Page, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page.screenshot(path=path)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")


def join(page: Page, name: str, room: str) -> Page:
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join button")
    expect(page.locator("#messages")).to_contain_text(f"welcome to #{room}, {name}")
    return page


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_chat_pages_in_a_room_see_its_messages_and_only_its_messages(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with example("chat", tmp_path) as base, pages(browser, base) as open_page:
        alice = join(open_page(), "alice", "blue")
        bob = join(open_page(), "bob", "blue")
        carol = join(open_page(), "carol", "green")
        expect(alice.locator("#messages")).to_contain_text("bob joined")

        say(alice, "hello blue room")
        expect(bob.locator("#messages")).to_contain_text("alice: hello blue room")
        expect(alice.locator("#messages")).to_contain_text("alice: hello blue room")

        # Each page gets its room's messages in order, and the server published alice's message
        # before carol's: once carol sees her own, alice's would have come before it.
        say(carol, "hello green room")
        expect(carol.locator("#messages")).to_contain_text("carol: hello green room")
        assert "hello blue room" not in carol.inner_text("#messages")
        say(bob, "bye")
        expect(bob.locator("#messages")).to_contain_text("bob: bye")
        assert "green" not in bob.inner_text("#messages")
        expect(alice.locator("#messages")).to_contain_text("bob: bye")
        bob.click("#leave")
        expect(alice.locator("#messages")).to_contain_text("bob left")
        expect(bob.locator("#join")).to_be_visible()

        for name, page in (("alice", alice), ("carol", carol)):
            screenshot(page, tmp_path / f"chat-{name}.png", capsys)


def plotted(page: Page) -> int:
    """How many points the page's first series has."""
    return int(page.eval_on_selector("polyline.alpha", "line => line.points.numberOfItems"))


def wait_for_points(page: Page, count: int) -> None:
    page.wait_for_function(
        "count => document.querySelector('polyline.alpha').points.numberOfItems >= count",
        arg=count,
    )


def test_dashboard_page_plots_the_ticks_as_they_come(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with example("dashboard", tmp_path) as base, pages(browser, base) as open_page:
        first = open_page()
        wait_for_points(first, 5)
        earlier = plotted(first)
        wait_for_points(first, earlier + 5)  # half a second of ticks later
        expect(first.locator("#legend")).to_contain_text("alpha")
        expect(first.locator("#status")).to_contain_text("ticks received")

        # A page opened later starts with the history, then gets the same ticks.
        at_open = plotted(first)
        second = open_page()
        wait_for_points(second, at_open)
        expect(second.locator("#status")).to_contain_text("2 subscriber(s)")
        for series in ("alpha", "beta", "gamma"):
            assert first.get_attribute(f"polyline.{series}", "points")
        wait_for_points(first, 20)  # two seconds of ticks: a plot worth looking at
        screenshot(first, tmp_path / "dashboard.png", capsys)
