"""Browser fixtures for every test module: Chromium (skipped when missing, unless REQUIRE_BROWSER=1),
one browser per module, a fresh page per test."""

from __future__ import annotations

import os
import subprocess

import pytest

from web import CHROMIUM, CHROMIUM_ARGS, WAIT_S


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        msg = f"Chromium not found at {CHROMIUM}; install Debian's 'chromium' package (make browser)."
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but " + msg, pytrace=False)
        pytest.skip(msg)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium_path):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1500})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_S * 1000)
    pg.page_errors = []
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    try:
        yield pg
    finally:
        ctx.close()


@pytest.fixture
def one_thread():
    """Tests check values, not speed: one torch thread avoids OpenMP's spinning threads slowing to
    a crawl when the machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def attn_cli(capsys):
    """`python -m attn ARGS` run in this process: a subprocess imports torch again (about 3 s a call).
    Returns what subprocess.run would (returncode, stdout, stderr); argparse's exits become return codes.
    The entry point itself runs as a real subprocess in test_rules.py and test_bench.py."""
    from attn import cli

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()  # drop what the test printed before
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run
