"""Every decoder against random and mutated input: it returns a value that encodes back to the very
same bytes, or raises its own module's error class, never another exception.

Seeds are every encoding in tests/vectors/ (each decoder gets the other codecs' bytes too); a seed
set must hold at least one valid encoding per decoder, so the round trip is always exercised."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.config import ConfigError, TesseraConfig, parse_config
from relay.envelope import Envelope, EnvelopeError
from relay.feeds.report import FeedReport, Observation, ReportError, SignedObservation
from relay.feeds.signed import SignedReport, SignedReportError
from relay.payloads import CommitteeRotation
from relay.tasks.payloads import (
    ProofAttestation,
    ProofVerdict,
    TaskPayloadError,
    TaskRequest,
    TaskRequestV2,
    TaskResult,
    TaskResultV2,
    task_payload_version,
)
from tests.support.committee import deal
from tests.support.fuzzing import budget, fuzz_bytes, json_values, mutated, vector_blobs

SEEDS = vector_blobs()
# A rotation has no vector file: two encodings made here (any 128 bytes pass as a key at this layer).
SEEDS += [CommitteeRotation(8, 4, 3, bytes(range(128)), 3600).encode(),
          CommitteeRotation(2**32 - 1, 65535, 1, b"\xff" * 128, 0).encode()]

# decoder, the error class its module raises, and how a decoded value encodes again
BINARY_DECODERS: dict[str, tuple[Callable[[bytes], object], type[Exception]]] = {
    "envelope": (Envelope.decode, EnvelopeError),
    "task request v1": (TaskRequest.decode, TaskPayloadError),
    "task result v1": (TaskResult.decode, TaskPayloadError),
    "proof attestation v1": (ProofAttestation.decode, TaskPayloadError),
    "task request v2": (TaskRequestV2.decode, TaskPayloadError),
    "task result v2": (TaskResultV2.decode, TaskPayloadError),
    "proof verdict v2": (ProofVerdict.decode, TaskPayloadError),
    "feed report": (FeedReport.decode, ReportError),
    "feed observation": (Observation.decode, ReportError),
    "committee rotation": (CommitteeRotation.decode, EnvelopeError),
}


def _decodes(decode: Callable[[bytes], object], error: type[Exception], data: bytes) -> bool:
    try:
        decode(data)
    except error:
        return False
    return True


@pytest.mark.parametrize("name", sorted(BINARY_DECODERS))
def test_the_seeds_hold_a_valid_encoding_of_every_codec(name: str) -> None:
    decode, error = BINARY_DECODERS[name]
    assert any(_decodes(decode, error, seed) for seed in SEEDS), f"no seed decodes as a {name}"


@pytest.mark.parametrize("name", sorted(BINARY_DECODERS))
@settings(max_examples=budget(150), deadline=None)
@given(data=fuzz_bytes(SEEDS))
def test_binary_decoder_round_trips_or_raises_its_own_error(name: str, data: bytes) -> None:
    decode, error = BINARY_DECODERS[name]
    try:
        value = decode(data)
    except error:
        return
    assert value.encode() == data, f"{name}: decoded {value!r} encodes differently"


@settings(max_examples=budget(150), deadline=None)
@given(kind=st.integers(-1, 300), data=fuzz_bytes(SEEDS))
@example(kind=99, data=b"")
def test_task_payload_version_is_1_or_2_or_a_task_payload_error(kind: int, data: bytes) -> None:
    try:
        assert task_payload_version(kind, data) in (1, 2)
    except TaskPayloadError:
        pass


# --- JSON decoders ----------------------------------------------------------------------------

_DEALT = deal(epoch=7)
_SIGNED = _DEALT.sign(round_=3, published_at=1_795_431_723_000).to_json()
_SIGNED_FIELDS = sorted(_SIGNED)


def _tampered(base: dict, changes: dict, dropped: list[str]) -> dict:
    out = {k: v for k, v in base.items() if k not in dropped}
    out.update(changes)
    return out


_signed_report_json = json_values | st.builds(
    _tampered,
    st.just(_SIGNED),
    st.dictionaries(st.sampled_from(_SIGNED_FIELDS + ["extra"]),
                    json_values | st.sampled_from([v for v in _SIGNED.values()]), max_size=3),
    st.lists(st.sampled_from(_SIGNED_FIELDS), max_size=2),
) | st.builds(
    lambda base, report: {**base, "report": "0x" + report.hex()},
    st.just(_SIGNED), mutated([bytes.fromhex(_SIGNED["report"][2:])]),
)


@settings(max_examples=budget(200), deadline=None)
@given(data=_signed_report_json)
@example(data=_SIGNED)
def test_signed_report_json_round_trips_or_raises_signed_report_error(data: object) -> None:
    try:
        value = SignedReport.from_json(data)
    except SignedReportError:
        return
    assert isinstance(data, dict)
    again = value.to_json()
    assert again["report"] == data["report"] and again["signature"] == data["signature"]
    assert again["epoch"] == data["epoch"]
    assert SignedReport.from_json(again) == value


_OBSERVATIONS = [blob for blob in SEEDS if _decodes(Observation.decode, ReportError, blob)]
_signed_observation_json = json_values | st.fixed_dictionaries({
    "observation": st.text(max_size=8) | fuzz_bytes(_OBSERVATIONS).map(lambda b: "0x" + b.hex()) | json_values,
    "signature": st.binary(max_size=70).map(lambda b: "0x" + b.hex()) | json_values,
})


@settings(max_examples=budget(200), deadline=None)
@given(data=_signed_observation_json)
def test_signed_observation_json_round_trips_or_raises_report_error(data: object) -> None:
    try:
        value = SignedObservation.from_json(data)  # type: ignore[arg-type]  # anything may arrive
    except ReportError:
        return
    assert isinstance(data, dict)
    again = value.to_json()
    assert bytes.fromhex(again["observation"][2:]) == bytes.fromhex(str(data["observation"]).removeprefix("0x"))
    assert SignedObservation.from_json(again) == value


# --- config -----------------------------------------------------------------------------------

_VALID_CONFIG = {
    "chains": {
        "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:8545"],
                "contracts": {"gateway": "0x" + "11" * 20}, "signer": {"env": "RELAYER_KEY"}},
        "solana": {"kind": "solana", "domain": 900, "rpc_urls": ["http://127.0.0.1:8899"],
                   "ws_urls": ["ws://127.0.0.1:8900"], "commitment": "confirmed",
                   "program_id": "11111111111111111111111111111111"},
    },
    "committee": {"file": "committee.json", "share": "share-{index}.json"},
    "relayer": {"db": "relayer.db"},
}

_config_keys = st.sampled_from([
    "chains", "committee", "relayer", "attester", "worker", "feeds", "feed_round", "feed_server", "feed_push",
    "executors", "proof_verifiers", "state_dir", "kind", "evm", "solana", "domain", "chain_id", "rpc_urls",
    "ws_urls", "confirmations", "contracts", "signer", "sender", "file", "env", "commitment", "program_id",
    "accounts", "db", "listen", "share", "key_file", "password", "payout", "executors", "sources", "path",
    "decimals", "id", "x",
])
_config_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.sampled_from([
    "evm", "solana", "http://127.0.0.1:1", "ws://x", "127.0.0.1:80", "0x" + "11" * 20,
    "11111111111111111111111111111111", "finalized", "a.db", "", "ETH/USD",
]) | st.text(max_size=12)
_config_values = st.recursive(
    _config_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_config_keys, inner, max_size=4),
    max_leaves=16,
)


def _nudged(base: dict, path: list[str], value: object) -> dict:
    """`base` with the value at `path` (a prefix of existing keys, then a new one) replaced."""
    out = json.loads(json.dumps(base))
    node = out
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            break
        node = child
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    return out


_config_dicts = st.dictionaries(_config_keys, _config_values, max_size=5) | st.builds(
    _nudged, st.just(_VALID_CONFIG),
    st.lists(st.sampled_from(["chains", "evm", "solana", "committee", "relayer", "domain", "rpc_urls", "kind",
                              "signer", "contracts", "file", "share"]), min_size=1, max_size=4),
    _config_values,
)


@settings(max_examples=budget(200), deadline=None)
@given(data=_config_dicts)
@example(data=_VALID_CONFIG)
def test_config_parses_and_dumps_again_or_raises_config_error(data: dict) -> None:
    try:
        config = parse_config(data)
    except ConfigError:
        return
    assert isinstance(config, TesseraConfig)
    # What dump_config writes parses to the same config.
    assert parse_config(config.model_dump(mode="json", exclude_none=True)) == config


@settings(max_examples=budget(100), deadline=None)
@given(text=st.text(max_size=200) | st.sampled_from(['[chains.evm]\nkind = "evm"\n', "[[chains]]\n", "a = 1\na = 2\n"]))
def test_config_file_is_toml_or_a_config_error(tmp_path_factory, text: str) -> None:
    from relay.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        config = load_config(path)
    except ConfigError:
        return
    assert isinstance(config, TesseraConfig) and tomllib.loads(text) is not None



def test_the_config_seed_is_valid() -> None:
    assert parse_config(_VALID_CONFIG).chains["solana"].commitment == "confirmed"
