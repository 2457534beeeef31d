"""EvmTaskBoardV2 logic that needs no node: config roles and keys, refusal decoding, cursors, and the
request watcher (finality, envelope rebuilt from TaskReceived + MessageDelivered, resume, the
retryFailed path) against a fake web3 client."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from eth_abi import encode as abi_encode

from adapters.evm.driver import EvmDriver
from adapters.evm.taskboard import (
    EvmTaskBoardV2,
    TaskBoardNotConfigured,
    board_refusal,
    parse_cursor,
)
from adapters.registry import driver_named
from relay.config import EvmChain, KeyRef, WorkerSection, parse_config
from relay.errors import ConfigError
from relay.envelope import Envelope, address_to_bytes32
from relay.protocol import MessageKind
from relay.tasks.board import BoardRefused, RequestExpired, ResultAlreadySubmitted, ResultRefused, TaskBoardError
from relay.interfaces import RequesterBoardV2, ServingBoardV2
from relay.tasks.payloads import TaskRequestV2

DOMAIN = 31337
REMOTE = 424242
GATEWAY = "0x" + "ab" * 20
BOARD = "0x" + "cd" * 20
REMOTE_BOARD = b"\x00" * 12 + b"\x5e" * 20
KEY = "0x" + "11" * 32


pytestmark = pytest.mark.usefixtures("evm_contracts")  # tests/conftest.py


def _board(confirmations: int | None = 0) -> EvmTaskBoardV2:
    return EvmTaskBoardV2.connect("http://127.0.0.1:1", domain=DOMAIN, chain_id=DOMAIN, gateway=GATEWAY, board=BOARD,
                                private_key=KEY, confirmations=confirmations, poll_interval=0.01)


# --- construction -----------------------------------------------------------------------------


def test_board_implements_both_roles_and_needs_its_address() -> None:
    board = _board()
    assert isinstance(board, ServingBoardV2) and isinstance(board, RequesterBoardV2)
    assert board.address == address_to_bytes32(BOARD) and board.domain == DOMAIN
    chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=["http://x"], contracts={"Gateway": GATEWAY})
    with pytest.raises(TaskBoardNotConfigured, match="TaskBoardV2 = "):
        EvmTaskBoardV2("evm", chain, KEY)


def _config(tmp_path: Any, sender: bool = True) -> Any:
    (tmp_path / "user.key").write_text("22" * 32 + "\n")
    chain: dict[str, Any] = {"kind": "evm", "domain": DOMAIN, "chain_id": DOMAIN, "rpc_urls": ["http://127.0.0.1:1"],
                             "contracts": {"Gateway": GATEWAY, "TaskBoardV2": BOARD}}
    if sender:
        chain["sender"] = {"file": str(tmp_path / "user.key")}
    return parse_config({"chains": {"evm": chain, "sol": {"kind": "solana", "domain": 900, "rpc_urls": ["http://x"]}}})


def test_from_config_roles(tmp_path: Any) -> None:
    config = _config(tmp_path)
    chain = config.chains["evm"]
    requester = EvmTaskBoardV2.from_config("evm", chain, role="requester")
    assert requester._evm.account is not None and requester._evm.account.key.hex().endswith("22" * 32)
    assert requester.account == address_to_bytes32(requester._evm.account.address)
    worker = EvmTaskBoardV2.from_config("evm", chain, role="worker", worker_key="33" * 32)
    assert worker._evm.account is not None and worker._evm.account.key.hex().endswith("33" * 32)
    assert EvmTaskBoardV2.from_config("evm", chain, role="reader").account == bytes(32)
    with pytest.raises(TaskBoardError, match="worker's own EVM private key.*evm_key"):
        EvmTaskBoardV2.from_config("evm", chain, role="worker")
    (tmp_path / "worker.key").write_text("44" * 32)
    with_section = config.model_copy(update={"worker": WorkerSection(evm_key=KeyRef(file=tmp_path / "worker.key"))})
    from_section = driver_named(with_section, "evm").serving_board_v2(with_section, with_section.worker)
    assert isinstance(from_section, EvmTaskBoardV2)
    assert from_section._evm.account is not None and from_section._evm.account.key.hex().endswith("44" * 32)
    with pytest.raises(TaskBoardError, match="32-byte hex private key"):
        EvmTaskBoardV2.from_config("evm", chain, role="worker", worker_key="0x1234")
    # Which board class serves a chain is the registry's answer, not the board's.
    assert not isinstance(driver_named(config, "sol"), EvmDriver)
    with pytest.raises(ConfigError, match="no chain 'nope'"):
        driver_named(config, "nope")
    with pytest.raises(TaskBoardError, match="role must be"):
        EvmTaskBoardV2.from_config("evm", chain, role="relayer")  # type: ignore[arg-type]
    with pytest.raises(TaskBoardError, match="set chains.evm.sender"):
        EvmTaskBoardV2.from_config("evm", _config(tmp_path, sender=False).chains["evm"], role="requester")


def test_refusals_are_typed_and_tell_what_to_do() -> None:
    rid = "0x" + "42" * 32
    already = board_refusal(ResultRefused, "the result", f"ResultAlreadySubmitted({rid})")
    assert isinstance(already, ResultAlreadySubmitted) and already.error == "ResultAlreadySubmitted"
    assert "nothing to do" in str(already)
    expired = board_refusal(ResultRefused, "the result", f"RequestExpired({rid}, 1, 2)")
    assert isinstance(expired, RequestExpired) and "reclaim" in str(expired)
    other = board_refusal(ResultRefused, "the result", "OutputHashMismatch(0x00, 0x11)")
    assert type(other) is ResultRefused and other.reason == "OutputHashMismatch(0x00, 0x11)"
    assert isinstance(other, BoardRefused) and isinstance(other, TaskBoardError)


async def test_request_ids_must_be_32_bytes() -> None:
    board = _board()
    for call in (board.claim_status, board.current_price, board.task_status, board.reclaim, board.expire_claim,
                 board.release_bond, board.result_recorded):
        with pytest.raises(TaskBoardError, match="32-byte message id"):
            await call(b"\x01" * 31)
    with pytest.raises(TaskBoardError, match="32-byte message id"):
        await board.submit_result("ab" * 32, b"")  # type: ignore[arg-type]


def test_cursor_format() -> None:
    assert parse_cursor(None) is None
    assert parse_cursor("12:3") == (12, 3)
    for bad in ("12", "a:b", "1:2:3"):
        with pytest.raises(TaskBoardError, match="block:logIndex"):
            parse_cursor(bad)


# --- the watcher against a fake node ------------------------------------------------------------


class FakeEth:
    def __init__(self, head: int) -> None:
        self.block_number_value = head
        self.logs: list[dict[str, Any]] = []

    @property
    async def block_number(self) -> int:
        return self.block_number_value

    async def get_block(self, number: int) -> dict[str, Any]:
        return {"number": number, "timestamp": 1_700_000_000 + number}

    async def get_logs(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        topics = params["topics"]
        out = []
        for e in self.logs:
            if e["address"].lower() != params["address"].lower():
                continue
            if not params["fromBlock"] <= e["blockNumber"] <= params["toBlock"]:
                continue
            if any(t is not None and "0x" + e["topics"][i].hex() != t for i, t in enumerate(topics)):
                continue
            out.append(e)
        return out


def _install(board: EvmTaskBoardV2, eth: FakeEth) -> None:
    w3 = SimpleNamespace(eth=eth)

    async def call(what: str, fn: Any) -> Any:
        return await fn(w3)

    board._evm._call = call  # type: ignore[method-assign]


def _topic(hex_topic: str) -> bytes:
    return bytes.fromhex(hex_topic.removeprefix("0x"))


def _delivery(board: EvmTaskBoardV2, nonce: int, block: int, tx: bytes, first_index: int,
              payload: bytes | None = None, event_nonce: int | None = None, delivered_tx: bytes | None = None,
              delivered_block: int | None = None) -> tuple[Envelope, list[dict[str, Any]]]:
    payload = payload or TaskRequestV2("echo", 5, 2_000_000_000, 60, 5000, 30, 1_000, b"\x66" * 32,
                                       input=f"input {nonce}".encode()).encode()
    envelope = Envelope(MessageKind.TASK_REQUEST, nonce, REMOTE, REMOTE_BOARD, DOMAIN, board.address, payload)
    request = TaskRequestV2.decode(payload)
    received = {
        "address": BOARD, "blockNumber": block, "logIndex": first_index + 1, "transactionHash": tx,
        "topics": [_topic(board._topic_received), envelope.message_id, REMOTE.to_bytes(32, "big")],
        "data": abi_encode(["bytes32", "uint64", "bytes"], [REMOTE_BOARD, request.deadline, payload]),
    }
    delivered = {
        "address": GATEWAY, "blockNumber": delivered_block if delivered_block is not None else block,
        "logIndex": first_index, "transactionHash": delivered_tx or tx,
        "topics": [_topic(board._evm._topic_delivered), envelope.message_id, REMOTE.to_bytes(32, "big")],
        "data": abi_encode(["uint64", "bool"], [nonce if event_nonce is None else event_nonce, True]),
    }
    return envelope, [delivered, received]


async def _take(board: EvmTaskBoardV2, cursor: str | None, n: int, wait: float = 0.2) -> list[Any]:
    out: list[Any] = []

    async def run() -> None:
        async for item in board.watch_requests(cursor):
            out.append(item)

    task = asyncio.create_task(run())
    await asyncio.sleep(wait)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(out) == n, out
    return out


async def test_watch_rebuilds_envelopes_in_order_only_when_final_and_resumes() -> None:
    board = _board(confirmations=2)
    eth = FakeEth(head=11)
    first, logs1 = _delivery(board, 7, 10, b"\x01" * 32, 0)
    second, logs2 = _delivery(board, 8, 10, b"\x02" * 32, 2)
    third, logs3 = _delivery(board, 9, 11, b"\x03" * 32, 0)
    eth.logs = logs1 + logs2 + logs3
    _install(board, eth)
    assert await _take(board, None, 0) == []  # block 10 has 1 confirmation, not 2
    eth.block_number_value = 12
    got = await _take(board, None, 2)
    assert [i.envelope for i in got] == [first, second]
    assert all(i.request_id == i.envelope.message_id for i in got)
    assert got[0].delivery_tx == "0x" + "01" * 32 and got[0].position == 10 and got[0].cursor == "10:1"
    assert got[0].auction_start == 1_700_000_010  # the delivering block's time
    assert got[1].request.input == b"input 8"
    # Resuming mid-block yields what came after the cursor, not before.
    eth.block_number_value = 13
    resumed = await _take(board, got[0].cursor, 2)
    assert [i.envelope for i in resumed] == [second, third]


async def test_watch_finds_the_nonce_of_a_retried_delivery_and_skips_inconsistent_events() -> None:
    board = _board(confirmations=0)
    eth = FakeEth(head=20)
    # Handled by Gateway.retryFailed in block 20: MessageDelivered is in the failed delivery (block 15).
    retried, logs_retried = _delivery(board, 3, 20, b"\x0a" * 32, 4, delivered_tx=b"\x0b" * 32, delivered_block=15)
    # The gateway's nonce does not rebuild the board's message id: skipped, loudly, not yielded.
    _, logs_bad = _delivery(board, 4, 20, b"\x0c" * 32, 6, event_nonce=99)
    fine, logs_fine = _delivery(board, 5, 20, b"\x0d" * 32, 8)
    eth.logs = logs_retried + logs_bad + logs_fine
    _install(board, eth)
    got = await _take(board, None, 2)
    assert [i.envelope for i in got] == [retried, fine]
    assert got[0].delivery_tx == "0x" + "0a" * 32 and got[0].envelope.nonce == 3
