"""The relayer's payment policy (relay/policy.py) with fake source chains that report the fee a send
paid and the gateway's quote; then in the pipeline: an unpaid message is a dead letter with the
reason refused_unpaid and the metric counts it. The e2e counterpart is tests/e2e/test_fees.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair

from relay.config import EvmChain, RelayerPolicy, SolanaChain
from relay.errors import ConfigError, TesseraError
from relay.pipeline import Relayer
from relay.policy import PaymentPolicy, policy_problems
from relay.store import RetryReason, Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope
from tests.unit.test_config_check import check, good
from tests.unit.test_pipeline import FAST

SENDER = b"\x01" * 32  # tests.support.fakes.envelope's sender
OTHER = b"\x00" * 12 + b"\x0b" * 20


class PricedChain(FakeChain):
    """A source chain whose gateway recorded `paid[message_id]` and quotes `quote_value`."""

    def __init__(self, name: str, domain: int) -> None:
        super().__init__(name, domain)
        self.paid: dict[bytes, int] = {}
        self.quote_value = 1000
        self.quote_error: Exception | None = None
        self.quoted: list[tuple[int, int, bytes | None]] = []

    async def fee_paid(self, source_tx: str, message_id: bytes) -> int | None:
        return self.paid.get(message_id)

    async def quote(self, dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        self.quoted.append((dst_domain, payload_length, sender))
        if self.quote_error is not None:
            raise self.quote_error
        return self.quote_value


def _chains() -> dict[str, EvmChain | SolanaChain]:
    return {
        "evm": EvmChain(kind="evm", domain=SRC, chain_id=SRC, rpc_urls=["http://127.0.0.1:8545"]),
        "solana": SolanaChain(kind="solana", domain=DST, rpc_urls=["http://127.0.0.1:8899"]),
    }


async def test_none_delivers_everything_unless_denied() -> None:
    src = PricedChain("evm", SRC)
    env = envelope(0)
    assert await PaymentPolicy().refusal(env, "0xtx", src) is None
    denied = PaymentPolicy(deny={SRC: frozenset({SENDER})})
    assert "relayer.policy.deny" in await denied.refusal(env, "0xtx", src)


async def test_minimum_refuses_underpaid_and_unrecorded_fees() -> None:
    src = PricedChain("evm", SRC)
    policy = PaymentPolicy(mode="minimum", minimum={SRC: 500}, chain_names={SRC: "evm"})
    paid, under, none = envelope(0), envelope(1), envelope(2)
    src.paid = {paid.message_id: 500, under.message_id: 499}
    assert await policy.refusal(paid, "0xa", src) is None
    reason = await policy.refusal(under, "0xb", src)
    assert reason.startswith("unpaid: paid 499, below relayer.policy.minimum.evm = 500")
    assert "no fee recorded in 0xc" in await policy.refusal(none, "0xc", src)
    # Another source chain without a minimum: nothing to enforce.
    other = envelope(3, src=DST, dst=SRC)
    assert await policy.refusal(other, "sig", PricedChain("solana", DST)) is None


async def test_onchain_quote_compares_with_the_source_gateways_quote_less_the_tolerance() -> None:
    src = PricedChain("evm", SRC)
    src.quote_value = 10_000
    policy = PaymentPolicy(mode="onchain_quote", quote_tolerance_bps=1000)
    enough, short = envelope(0), envelope(1)
    src.paid = {enough.message_id: 9_000, short.message_id: 8_999}
    assert await policy.refusal(enough, "0xa", src) is None
    assert "below the domain 31337 gateway's quote 10000" in await policy.refusal(short, "0xb", src)
    # Asked for the same destination, length and sender (a task board's price is its flat fee).
    assert src.quoted[0] == (DST, len(enough.payload), SENDER)


async def test_a_quote_that_cannot_be_read_raises_instead_of_refusing() -> None:
    src = PricedChain("evm", SRC)
    src.quote_error = TesseraError("Gateway.quote refused: PriceStale(...)")
    with pytest.raises(TesseraError, match="PriceStale"):
        await PaymentPolicy(mode="onchain_quote").refusal(envelope(0), "0xa", src)


async def test_allow_beats_the_mode_and_committee_messages_always_go() -> None:
    src = PricedChain("evm", SRC)
    policy = PaymentPolicy(mode="minimum", minimum={SRC: 10**18}, allow={SRC: frozenset({SENDER})})
    assert await policy.refusal(envelope(0), "0xa", src) is None
    committee = envelope(0, src=0)
    assert await PaymentPolicy(mode="minimum", minimum={0: 1}).refusal(committee, "0xa", None) is None
    # An unknown source (no adapter) cannot show a fee: refused with what to do.
    assert "add the chain to the config" in await PaymentPolicy(mode="minimum", minimum={SRC: 1}).refusal(
        envelope(1), "0xa", None)


def test_from_config_resolves_names_and_addresses() -> None:
    address = "0x" + "0b" * 20
    policy = PaymentPolicy.from_config(
        RelayerPolicy(mode="minimum", minimum={"evm": 7}, allow={"evm": [address]}, deny={"solana": ["1" * 32]}),
        _chains())
    assert policy.minimum == {SRC: 7}
    assert policy.allow == {SRC: frozenset({OTHER})}
    assert policy.deny == {DST: frozenset({bytes(32)})}


def test_bad_policies_name_the_field() -> None:
    problems = policy_problems(RelayerPolicy(mode="minimum", minimum={"nope": 1},
                                             allow={"evm": ["not-an-address"]}, deny={"ghost": []}), _chains())
    assert problems == [
        "relayer.policy.minimum.nope: no chain 'nope' under [chains] (known: evm, solana)",
        "relayer.policy.allow.evm: 'not-an-address' is not a 0x-prefixed 20-byte EVM address (chain 'evm' is evm)",
        "relayer.policy.deny.ghost: no chain 'ghost' under [chains] (known: evm, solana)",
    ]
    assert "no chain has a minimum" in policy_problems(RelayerPolicy(mode="minimum"), _chains())[0]
    with pytest.raises(ConfigError, match="relayer.policy.minimum.nope"):
        PaymentPolicy.from_config(RelayerPolicy(mode="minimum", minimum={"nope": 1}), _chains())


async def test_pipeline_dead_letters_unpaid_messages_and_counts_them(store: Store) -> None:
    src, dst = PricedChain("evm", SRC), FakeChain("solana", DST)
    policy = PaymentPolicy(mode="minimum", minimum={SRC: 100}, chain_names={SRC: "evm"})
    relayer = Relayer(store, {SRC: src, DST: dst}, FakeCommittee(), FAST, policy=policy)
    paid, unpaid = envelope(0), envelope(1)
    src.paid = {paid.message_id: 100, unpaid.message_id: 1}
    await relayer.observe(paid, "0xa")
    await relayer.observe(unpaid, "0xb")
    for _ in range(3):
        await relayer.process_due()
    assert (await store.get(paid.message_id)).stage is Stage.CONFIRMED
    record = await store.get(unpaid.message_id)
    assert record.stage is Stage.DEAD and record.reason_code is RetryReason.REFUSED_UNPAID
    assert record.reason.startswith("unpaid: paid 1, below relayer.policy.minimum.evm = 100")
    assert [d.envelope.message_id for d in dst.sent.values()] == [paid.message_id]  # no gas spent on it
    assert 'tessera_relayer_refused_unpaid_total{src_domain="31337"} 1.0' in relayer.metrics.render().decode()
    # Once the operator allows it (or the policy changes), `relay retry` delivers it.
    relayer.policy = PaymentPolicy(mode="minimum", minimum={SRC: 1})
    await store.force_retry(unpaid.message_id)
    for _ in range(3):
        await relayer.process_due()
    assert (await store.get(unpaid.message_id)).stage is Stage.CONFIRMED


def test_relay_config_check_lists_policy_problems(tmp_path: Path, dealt, capsys) -> None:
    """`relay config check` (exit 1) names each bad [relayer.policy] field; a good policy passes."""
    where = _config_folder(tmp_path, dealt)
    data = good()
    data["relayer"] = {"policy": {"mode": "minimum", "minimum": {"evm": 10, "mars": 1},
                                  "deny": {"sol": ["0x" + "ab" * 20]}}}
    code, problems = check(where, data)
    assert code == 1
    assert "relayer.policy.minimum.mars: no chain 'mars' under [chains] (known: evm, sol)" in problems
    assert any(p.startswith("relayer.policy.deny.sol: '0x") and "not a base58 Solana public key" in p for p in problems)
    out = capsys.readouterr()
    assert "relayer.policy.minimum.mars" in out.out + out.err
    data["relayer"] = {"policy": {"mode": "onchain_quote", "allow": {"evm": ["0x" + "ab" * 20]}}}
    assert check(where, data) == (0, [])


def _config_folder(tmp_path: Path, dealt) -> Path:
    """What tests/unit/test_config_check.py's `folder` fixture writes: committee and key files."""
    dealt.committee.save(tmp_path / "committee.toml")
    (tmp_path / "evm.key").write_text("0x" + "11" * 32)
    (tmp_path / "sol.json").write_text(json.dumps(list(bytes(Keypair()))))
    return tmp_path
