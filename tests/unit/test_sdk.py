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

    monkeypatch.setattr(client, "_task_board_v2", no_board)
    monkeypatch.setattr(client, "_serving_board_v2", no_board)
    with pytest.raises(TaskRequestError, match="src and dst are the same chain"):
        await client.request_task(src="evm", dst="evm", executor="echo", input=b"hi", max_fee=1)


def _committee_config(tmp_path, current, previous=None, until=None) -> dict:
    current.committee.save(tmp_path / "committee.toml")
    table = {"file": str(tmp_path / "committee.toml")}
    if previous is not None:
        previous.committee.save(tmp_path / "previous.toml")
        table |= {"previous": str(tmp_path / "previous.toml"), "previous_valid_until": until}
    return CONFIG | {"committee": table}


def test_verify_accepts_the_outgoing_committee_only_during_the_grace_window(tmp_path) -> None:
    from relay.envelope import Envelope
    from tests.support.committee import deal

    old, new = deal(epoch=1), deal(epoch=2)
    client = TesseraClient(parse_config(_committee_config(tmp_path, new, old, until=1_000_000)))
    env = Envelope(kind=4, nonce=0, src_domain=31337, src_sender=bytes(32), dst_domain=13375, dst_receiver=bytes(32))
    assert client.verify(env, 2, new.sign_digest(env.digest(2)))
    by_old = old.sign_digest(env.digest(1))
    assert client.verify(env, 1, by_old, now=999_999)  # signed by the outgoing committee, inside the grace
    assert not client.verify(env, 1, by_old, now=1_000_001)  # after the grace: refused, as the chains do
    assert not client.verify(env, 1, new.sign_digest(env.digest(1)), now=999_999)  # epoch 1 with the new key
    assert not client.verify(env, 3, new.sign_digest(env.digest(3)))  # an epoch nobody configured
    without = TesseraClient(parse_config(_committee_config(tmp_path, new)))
    assert not without.verify(env, 1, by_old, now=0)  # no previous committee configured


class _Destination:
    """A destination adapter whose message status follows a script."""

    name, domain = "solana", 13375

    def __init__(self, statuses) -> None:
        self.statuses = list(statuses)

    async def message_status(self, message_id: bytes, envelope=None):
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    async def delivery_tx(self, message_id: bytes) -> str:
        return "5ig"


async def test_wait_delivered_never_reports_a_failed_handler_as_delivered(client) -> None:
    from relay.envelope import Envelope
    from relay.interfaces import MessageStatus
    from relay.sdk import DeliveryFailedError

    env = Envelope(kind=4, nonce=0, src_domain=31337, src_sender=bytes(32), dst_domain=13375, dst_receiver=bytes(32))
    client._adapters["solana"] = _Destination([MessageStatus.HANDLER_FAILED])
    with pytest.raises(DeliveryFailedError, match="handler failed"):
        await client.wait_delivered(env, timeout=0.05, poll=0.01)
    # The relayer's retry re-runs the handler: then it is delivered, and says so.
    client._adapters["solana"] = _Destination([MessageStatus.HANDLER_FAILED, MessageStatus.NOT_DELIVERED,
                                               MessageStatus.DELIVERED])
    delivery = await client.wait_delivered(env, timeout=5, poll=0.01)
    assert delivery.status is MessageStatus.DELIVERED and delivery.tx == "5ig"
