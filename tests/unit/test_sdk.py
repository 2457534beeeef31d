"""SDK input validation: refused before anything is sent, with messages that say what to do."""

import pytest

from relay.config import parse_config
from relay.protocol import MessageKind
from relay.sdk import SdkError, TesseraClient, UnknownChainError
from relay.tasks.client import TaskRequestError

CONFIG = {
    "chains": {
        "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:9"],
                "contracts": {"Gateway": "0x" + "11" * 20}},
        "solana": {"kind": "solana", "domain": 13375, "rpc_urls": ["http://127.0.0.1:9"],
                   "program_id": "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"},
    }
}


@pytest.fixture
def client() -> TesseraClient:
    return TesseraClient(parse_config(CONFIG))


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        (dict(src="bsc", dst="solana", receiver=bytes(32), payload=b""), UnknownChainError, "no chain named 'bsc'"),
        (dict(src="evm", dst="solana", receiver=bytes(31), payload=b""), SdkError, "receiver must be 32 bytes"),
        (dict(src="evm", dst="solana", receiver=bytes(32), payload=bytes(513)), SdkError, "limit is 512"),
        (dict(src="evm", dst="solana", receiver=bytes(32), payload=b"", kind=MessageKind.COMMITTEE_ROTATION),
         SdkError, "come from the committee"),
    ],
)
async def test_bad_requests_are_refused_before_sending(client, kwargs, error, fragment) -> None:
    with pytest.raises(error, match=fragment):
        await client.send(**kwargs)


def test_verify_without_committee_says_what_is_missing(client) -> None:
    from relay.envelope import Envelope

    env = Envelope(kind=4, nonce=0, src_domain=1, src_sender=bytes(32), dst_domain=2, dst_receiver=bytes(32))
    with pytest.raises(SdkError, match=r"no \[committee\] table"):
        client.verify(env, 1, bytes(64))


async def test_a_task_to_its_own_chain_is_refused_before_anything_is_sent(client, monkeypatch) -> None:
    def no_board(name: str):
        raise AssertionError(f"the task board of {name!r} was reached: the request was not refused first")

    monkeypatch.setattr(client, "_task_board", no_board)
    with pytest.raises(TaskRequestError, match="src and dst are the same chain"):
        await client.request_task(src="evm", dst="evm", executor="echo", input=b"hi", max_fee=1)
