"""The explorer in a real browser: Playwright for Python driving Debian's Chromium
(scripts/ensure-chromium.sh; never `playwright install`) against the relayer of a running stack
(localnet, four attesters with feed rounds, the relayer, a worker on Solana, the feed server).

A user opens the page, pastes the source transaction of a message just sent and watches the
delivery appear without reloading; the same for a task by its request's source transaction (request,
result, attestation, payout); the feed tab draws the price and its rounds arrive live; the page
reads on a phone's width."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from relay.config import load_config
from relay.devstack import messaging_stack
from relay.sdk import TesseraClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Where screenshots go besides the test's tmp dir (for a person to look at): TESSERA_SCREENSHOTS=dir.
SCREENSHOTS = os.environ.get("TESSERA_SCREENSHOTS")


@pytest.fixture
async def browser(tmp_path: Path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900})
        try:
            yield context
        finally:
            await context.close()


async def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"explorer-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / path.name).write_bytes(path.read_bytes())
    return path


async def test_a_message_and_a_task_are_followed_live_in_the_browser(tmp_path: Path, browser) -> None:
    async with messaging_stack(tmp_path, feeds=True) as stack:
        await asyncio.gather(stack.start_feed_server(), stack.start_worker("solana"))
        base = f"http://{load_config(stack.config_path).relayer.listen}"
        page = await browser.new_page()
        loads: list[str] = []
        page.on("load", lambda: loads.append(page.url))
        await page.goto(f"{base}/explorer/")
        await page.wait_for_selector("#live.on", timeout=15_000)  # the SSE stream is open

        async with TesseraClient.from_config(stack.config_path) as client:
            sent = await client.send("evm", "solana", b"\x07" * 32, b"hello from the explorer test")
            # Searched at once: the relayer may not have seen it final yet; the page waits for it.
            await page.fill("#q", sent.source_tx)
            await page.click("#search button")
            card = page.locator(f'.card.message[data-id="0x{sent.message_id.hex()}"]')
            await card.wait_for(timeout=60_000)
            await card.locator('li.done[data-step="confirmed"]').wait_for(timeout=90_000)
            assert await card.locator(".source-tx").inner_text() == sent.source_tx
            assert "solana" in await card.locator('li[data-step="submitted"]').inner_text()
            await page.locator(".member.signed").first.wait_for(timeout=15_000)
            assert await page.locator(".member.signed").count() >= 3  # 3-of-4 committee
            assert "nothing found" not in (await page.locator("#notice").inner_text()).lower()
            await _screenshot(page, tmp_path, "message")

            handle = await client.request_task(src="evm", dst="solana", executor="sentiment",
                                               input="Markets rallied on strong earnings.", max_fee=10**15)
            await page.fill("#q", handle.tx)
            await page.click("#search button")
            task = page.locator(f'.card.task[data-task="0x{handle.request_id.hex()}"]')
            await task.wait_for(timeout=60_000)
            await task.locator(".badge.paid").wait_for(timeout=150_000)  # result, attestation, payout
            steps = await task.locator(".task-step").all_inner_texts()
            assert "sentiment" in steps[0] and "worker" in steps[2].lower() and "valid" in steps[3]
            await _screenshot(page, tmp_path, "task")
        # Only the first load: every update above arrived over the stream.
        assert loads == [f"{base}/explorer/"]

        await page.click('a[data-tab="feeds"]')
        rows = page.locator("#rounds tbody tr")
        await rows.first.wait_for(timeout=60_000)
        first = await page.locator("#rounds tbody tr td").first.inner_text()
        await page.wait_for_function(
            f"document.querySelector('#rounds tbody tr td').textContent !== '{first}'", timeout=60_000)
        assert await page.locator("#feed-price").inner_text() != "–"
        await _screenshot(page, tmp_path, "feeds")

        phone = await browser.new_page()
        await phone.set_viewport_size({"width": 390, "height": 844})
        await phone.goto(f"{base}/explorer/#q={sent.source_tx}")
        await phone.locator('li.done[data-step="confirmed"]').wait_for(timeout=15_000)
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px phone: it scrolls sideways"
        await _screenshot(phone, tmp_path, "phone")
