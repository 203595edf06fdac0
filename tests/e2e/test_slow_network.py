"""On a slow network (every request 400 ms late, a slow line) the page still starts as on a fast
one: the server's kernels, data sets and models arrive, and the first run happens by itself even
though the first check of the stack is overtaken by a second one."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Explorer, throttle

pytestmark = pytest.mark.e2e


def test_a_slow_network_still_gets_the_first_run_and_the_servers_lists(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    page.set_default_timeout(60_000)
    throttle(page, latency_ms=400, down_bytes_per_s=250_000, up_bytes_per_s=100_000)
    explorer.open()
    kernels = api.get("/kernels").json()["kernels"]
    init = page.locator('#layer-card-0 [data-field="init"] option')
    expect(init).to_have_count(1 + len(kernels))
    names = [d["name"] for d in api.get("/datasets").json()]
    values = page.eval_on_selector_all("#train-dataset option", "nodes => nodes.map(n => n.value)")
    assert values == names
    expect(page.locator("#train-fit")).to_have_attribute("data-fits", "true")
    expect(page.locator("#global-error")).to_be_hidden()
