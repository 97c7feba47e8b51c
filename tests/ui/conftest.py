"""Fixtures of the web UI's tests: one store filled by real runs, the pages served on loopback, Chromium.

The store is built once per session in a subprocess (`tests._support.ui_store`); the tests only read
it, except the live-update test, which appends a ledger row to its own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekit.collector import CollectorConfig
from tracekit.collector._server import CollectorThread
from tracekit.ui import UIConfig, install
from tracekit.ui._server import UIThread

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach the (closed) network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TOKEN = "ui-test-token-0123456789abcdef"


class UIStore:
    def __init__(self, home: Path, ids: dict[str, Any]) -> None:
        self.home, self.ids = home, ids


def build_store(home: Path) -> UIStore:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    out = subprocess.run([sys.executable, "-m", "tests._support.ui_store", str(home)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return UIStore(home, json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> UIStore:
    return build_store(tmp_path_factory.mktemp("ui-store") / "home")


@pytest.fixture(scope="session")
def ui_server(ui_store: UIStore) -> Iterator[str]:
    """`tracekit ui` over the store (no tokens), on a free loopback port: its base URL."""
    with UIThread(UIConfig(home=ui_store.home, port=0)) as server:
        yield server.url


@pytest.fixture(scope="session")
def collector_ui(ui_store: UIStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tracekit serve` (the collector with the pages) over a copy of the store, with a token: its base URL."""
    home = tmp_path_factory.mktemp("collector-store") / "home"
    shutil.copytree(ui_store.home, home)
    config = CollectorConfig.from_env(env={"TRACEKIT_TOKEN": TOKEN}, home=home, port=0)
    with CollectorThread(config, extensions=[install]) as server:
        yield server.url


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots (a test artifact under pytest's tmp dir)."""
    return tmp_path_factory.mktemp("ui-screenshots")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup dev does) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
