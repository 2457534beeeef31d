"""Executor registry (built-ins and entry-point plugins), echo, sentiment, and proof verifiers."""

from __future__ import annotations

import json
import time
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.envelope import keccak256
from relay.tasks import (
    EXECUTOR_GROUP,
    PROOF_VERIFIER_GROUP,
    AttestationMethod,
    EchoExecutor,
    Executor,
    ExecutorInputError,
    ExecutorRegistry,
    ExecutorUnavailableError,
    ProofKind,
    ProofVerifierRegistry,
    TaskResult,
    UnknownExecutorError,
)
from relay.tasks.embed import EmbedExecutor
from relay.tasks.executors import BUILTIN_EXECUTORS
from relay.tasks.sentiment import SentimentExecutor

KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
RID = keccak256(b"a request id")
PAYOUT = b"\x00" * 12 + b"\xaa" * 20


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, dist: str, module: str, source: str, entry_points: str) -> None:
    """A real (unpacked) distribution on sys.path, found by importlib.metadata like a pip-installed one."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(root))


PLUGIN_SOURCE = """
    from relay.tasks.executors import VerifyResult

    class Upper:
        id = "upper"
        deterministic = True

        def __init__(self, suffix: str = "") -> None:
            self.suffix = suffix.encode()

        async def run(self, input, *, deadline):
            return input.upper() + self.suffix

        def verify(self, input, output):
            ok = output == input.upper() + self.suffix
            return VerifyResult(ok, "" if ok else "not upper-case")

    class Liar:
        id = "somethingelse"
        deterministic = True

    class Quote:
        proof_kind = 2
        method = 3

        def __init__(self, vendor_key: str = "") -> None:
            self.vendor_key = vendor_key.encode()

        def verify(self, result, *, input, output):
            ok = result.proof == b"quote signed by " + self.vendor_key
            return VerifyResult(ok, "quote ok" if ok else "quote not signed by the vendor key")

    raise_on_import = None
"""

PLUGIN_ENTRY_POINTS = f"""
    [{EXECUTOR_GROUP}]
    upper = tessera_testplugin:Upper
    broken = tessera_testplugin_missing:Thing
    liar = tessera_testplugin:Liar
    echo = tessera_testplugin:Upper

    [{PROOF_VERIFIER_GROUP}]
    quote = tessera_testplugin:Quote
    brokenquote = tessera_testplugin:Nope
"""


# --- registry ------------------------------------------------------------------------------------


def test_builtins_load_and_unknown_ids_list_what_is_installed() -> None:
    registry = ExecutorRegistry.load(plugins=[])
    assert {"echo", "http", "sentiment"} <= set(registry.installed)
    with pytest.raises(UnknownExecutorError) as err:
        registry.get("x")
    assert str(err.value).startswith("unknown executor 'x'; installed: echo, http, sentiment")
    assert isinstance(registry.get("echo"), Executor)
    assert registry.get("sentiment") is registry.get("sentiment")  # built once


def test_embed_is_reported_unavailable_with_the_install_command_when_missing() -> None:
    registry = ExecutorRegistry.load(plugins=[])
    if EmbedExecutor.unavailable_reason() is None:
        assert "embed" in registry.installed
        return
    assert "embed" not in registry.installed
    assert "pip install 'tessera[embed]'" in registry.unavailable["embed"]
    with pytest.raises(ExecutorUnavailableError, match=r"pip install 'tessera\[embed\]'"):
        registry.get("embed")
    with pytest.raises(UnknownExecutorError, match="unavailable: embed"):
        registry.get("nope")


def test_plugins_load_from_the_entry_point_group_and_broken_ones_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, monkeypatch, "tessera_testplugin", "tessera_testplugin", PLUGIN_SOURCE, PLUGIN_ENTRY_POINTS)
    registry = ExecutorRegistry.load({"upper": {"suffix": "!"}})  # real discovery through importlib.metadata
    assert "upper" in registry.installed and "sentiment" in registry.installed
    assert "tessera_testplugin_missing" in registry.unavailable["broken"]
    assert "ModuleNotFoundError" in registry.unavailable["broken"]
    assert "already taken" in registry.unavailable["echo (tessera_testplugin:Upper)"]
    assert "echo" not in registry.unavailable and isinstance(registry.get("echo"), EchoExecutor)
    with pytest.raises(ExecutorUnavailableError, match="failed to load"):
        registry.get("broken")
    with pytest.raises(ExecutorUnavailableError, match="reports id 'somethingelse'"):
        registry.get("liar")


async def test_plugin_executor_runs_with_its_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "tessera_testplugin", "tessera_testplugin", PLUGIN_SOURCE, PLUGIN_ENTRY_POINTS)
    upper = ExecutorRegistry.load({"upper": {"suffix": "!"}}).get("upper")
    assert await upper.run(b"abc", deadline=None) == b"ABC!"
    assert upper.verify(b"abc", b"ABC!").ok and not upper.verify(b"abc", b"abc").ok


def test_plugins_can_be_passed_explicitly_and_bad_options_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "tessera_testplugin", "tessera_testplugin", PLUGIN_SOURCE, PLUGIN_ENTRY_POINTS)
    ep = EntryPoint("upper", "tessera_testplugin:Upper", EXECUTOR_GROUP)
    registry = ExecutorRegistry.load({"upper": {"colour": "red"}}, plugins=[ep])
    with pytest.raises(ExecutorUnavailableError, match=r"could not start: TypeError.*\[executors.upper\]"):
        registry.get("upper")


def test_invalid_plugin_ids_are_refused() -> None:
    ep = EntryPoint("a-very-long-executor-name", "relay.tasks.executors:EchoExecutor", EXECUTOR_GROUP)
    registry = ExecutorRegistry.load(plugins=[ep])
    assert "invalid executor id" in registry.unavailable["a-very-long-executor-name"]


def test_http_options_reach_the_factory_and_missing_config_says_what_to_set() -> None:
    with pytest.raises(ExecutorUnavailableError, match="needs base_url and model"):
        ExecutorRegistry.load(plugins=[]).get("http")
    http = ExecutorRegistry.load({"http": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}, plugins=[]).get("http")
    assert http.url == "http://127.0.0.1:9/v1/chat/completions" and not http.deterministic


# --- echo and sentiment ----------------------------------------------------------------------------


async def test_echo() -> None:
    echo = EchoExecutor()
    assert await echo.run(b"\x00\xffany bytes", deadline=None) == b"\x00\xffany bytes"
    assert echo.verify(b"a", b"a").ok and not echo.verify(b"a", b"b").ok


async def test_sentiment_output_is_canonical_json_with_fixed_floats() -> None:
    sentiment = SentimentExecutor()
    out = await sentiment.run(b"I love this, it is great!", deadline=None)
    assert out == b'{"label":"positive","compound":0.8622,"pos":0.6820,"neu":0.3180,"neg":0.0000}'
    assert json.loads(out)["label"] == "positive"
    assert json.loads(await sentiment.run("Terrible, awful service.".encode(), deadline=None))["label"] == "negative"
    assert json.loads(await sentiment.run(b"The meeting is on Tuesday.", deadline=None))["label"] == "neutral"
    assert await sentiment.run(b"", deadline=None) == b'{"label":"neutral","compound":0.0000,"pos":0.0000,"neu":0.0000,"neg":0.0000}'
    # VADER reads emoji through its own description lexicon ("grinning face").
    assert json.loads(await sentiment.run("très bien 😀".encode(), deadline=None))["compound"] == 0.3612


async def test_sentiment_is_deterministic_across_instances_and_verifies_by_reexecution() -> None:
    texts = [b"Not bad at all!!", b"I HATE waiting :(", "naïve café, so-so".encode(), b"meh " * 100]
    first, second = SentimentExecutor(), SentimentExecutor()
    for text in texts:
        a = await first.run(text, deadline=None)
        assert a == await second.run(text, deadline=None)
        assert second.verify(text, a).ok
        assert not second.verify(text, a.replace(b'"compound":', b'"compound": ')).ok


async def test_sentiment_refuses_non_utf8_input_with_the_offending_byte() -> None:
    with pytest.raises(ExecutorInputError, match=r"UTF-8 text; byte 2 \(0xff\)"):
        await SentimentExecutor().run(b"ok\xffno", deadline=None)
    assert "UTF-8" in SentimentExecutor().verify(b"\xff", b"{}").reason


# --- proof verifiers -------------------------------------------------------------------------------


def signed(executor: str, output: bytes, kind: ProofKind = ProofKind.NONE, proof: bytes = b"") -> TaskResult:
    return TaskResult.signed(KEY, request_id=RID, executor=executor, output=output, payout=PAYOUT, proof_kind=kind, proof=proof)


async def test_reexecution_and_signature_only_verifiers() -> None:
    executors = ExecutorRegistry.load(plugins=[])
    proofs = ProofVerifierRegistry.load(executors, plugins=[])
    text = b"What a wonderful day"
    output = await executors.get("sentiment").run(text, deadline=None)

    ok, method = proofs.check(signed("sentiment", output, ProofKind.REEXECUTION), input=text)
    assert ok.ok and method is AttestationMethod.REEXECUTION
    wrong = output.replace(b"positive", b"negative")
    bad, _ = proofs.check(signed("sentiment", wrong, ProofKind.REEXECUTION), input=text)
    assert not bad.ok and "different bytes" in bad.reason
    missing, _ = proofs.check(signed("sentiment", output, ProofKind.REEXECUTION))
    assert not missing.ok and "needs the task input" in missing.reason
    unknown, _ = proofs.check(signed("nosuch", output, ProofKind.REEXECUTION), input=text)
    assert not unknown.ok and "unknown executor 'nosuch'" in unknown.reason

    ok, method = proofs.check(signed("http", b"an answer"))
    assert ok.ok and method is AttestationMethod.SIGNATURE_ONLY
    forged = signed("http", b"an answer")
    forged = TaskResult(forged.request_id, forged.executor, forged.output_hash, forged.worker, forged.payout,
                        bytes(64), output=forged.output)
    refused, _ = proofs.check(forged)
    assert not refused.ok and "does not verify" in refused.reason
    by_uri = TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"x", payout=PAYOUT, output_uri="ar://x")
    mismatch, _ = proofs.check(by_uri, output=b"y")
    assert not mismatch.ok and "output_hash" in mismatch.reason


@pytest.mark.parametrize("kind", [ProofKind.TEE_QUOTE, ProofKind.ZK_PROOF])
def test_tee_and_zk_proofs_are_refused_without_a_plugin(kind: ProofKind) -> None:
    proofs = ProofVerifierRegistry.load(ExecutorRegistry.load(plugins=[]), plugins=[])
    outcome, method = proofs.check(signed("http", b"answer", kind, b"opaque proof"))
    assert not outcome.ok and method is AttestationMethod.PLUGGABLE_VERIFIER
    assert f"no verifier for proof kind {int(kind)}" in outcome.reason and PROOF_VERIFIER_GROUP in outcome.reason


def test_proof_verifier_plugins_load_from_their_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "tessera_testplugin", "tessera_testplugin", PLUGIN_SOURCE, PLUGIN_ENTRY_POINTS)
    proofs = ProofVerifierRegistry.load(ExecutorRegistry.load(plugins=[]), {"quote": {"vendor_key": "K1"}})
    assert "brokenquote" in proofs.unavailable and "Nope" in proofs.unavailable["brokenquote"]
    good, method = proofs.check(signed("http", b"answer", ProofKind.TEE_QUOTE, b"quote signed by K1"))
    assert good.ok and method is AttestationMethod.PLUGGABLE_VERIFIER
    bad, _ = proofs.check(signed("http", b"answer", ProofKind.TEE_QUOTE, b"quote signed by K2"))
    assert not bad.ok and "vendor key" in bad.reason
    zk, _ = proofs.check(signed("http", b"answer", ProofKind.ZK_PROOF, b"p"))
    assert not zk.ok and "no verifier for proof kind 3" in zk.reason


def test_tessera_own_entry_points_for_builtins_are_not_duplicates() -> None:
    own = [EntryPoint(name, target, EXECUTOR_GROUP) for name, target in BUILTIN_EXECUTORS.items()]
    registry = ExecutorRegistry.load(plugins=own)
    assert {"echo", "http", "sentiment"} <= set(registry.installed)
    assert not any("already taken" in reason for reason in registry.unavailable.values())


async def test_request_result_attestation_flow_through_envelopes() -> None:
    from relay.envelope import Envelope
    from relay.protocol import MessageKind
    from relay.tasks import ProofAttestation, TaskRequest

    evm_gateway, solana_gateway = b"\x00" * 12 + b"\x11" * 20, keccak256(b"solana gateway")
    request = TaskRequest("sentiment", 10**15, int(time.time()) + 600, input=b"Cross-chain tasks work great!")
    request_env = Envelope(MessageKind.TASK_REQUEST, 0, 31337, evm_gateway, 900, solana_gateway, request.encode())

    # Worker side: decode what arrived, run, sign.
    arrived = TaskRequest.decode(Envelope.decode(request_env.encode()).payload)
    executors = ExecutorRegistry.load(plugins=[])
    output = await executors.get(arrived.executor).run(arrived.input or b"", deadline=arrived.deadline)
    result = TaskResult.signed(KEY, request_id=request_env.message_id, executor=arrived.executor, output=output,
                               payout=PAYOUT, proof_kind=ProofKind.REEXECUTION)
    result_env = Envelope(MessageKind.TASK_RESULT, 0, 900, solana_gateway, 31337, evm_gateway, result.encode())

    # Attester side: decode, check by re-execution, attest.
    seen = TaskResult.decode(Envelope.decode(result_env.encode()).payload)
    verdict, method = ProofVerifierRegistry.load(executors, plugins=[]).check(seen, input=arrived.input)
    assert verdict.ok and method is AttestationMethod.REEXECUTION
    attestation = ProofAttestation.for_result(seen, result_env.message_id, method, int(time.time()))
    assert ProofAttestation.decode(attestation.encode()).payout == PAYOUT
    assert json.loads(seen.output or b"")["label"] == "positive"


def test_the_attester_gives_proof_verifier_plugins_their_config_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.config import parse_config
    from relay.daemons.messaging import result_checkers

    install_plugin(tmp_path, monkeypatch, "tessera_testplugin", "tessera_testplugin", PLUGIN_SOURCE, PLUGIN_ENTRY_POINTS)
    config = parse_config({"chains": {}, "executors": {"upper": {"suffix": "?"}},
                           "proof_verifiers": {"quote": {"vendor_key": "K7"}}})
    executors, proofs = result_checkers(config)
    assert executors.get("upper").suffix == b"?"
    good, _ = proofs.check(signed("http", b"answer", ProofKind.TEE_QUOTE, b"quote signed by K7"))
    assert good.ok
    bad, _ = proofs.check(signed("http", b"answer", ProofKind.TEE_QUOTE, b"quote signed by K1"))
    assert not bad.ok and "vendor key" in bad.reason
    with pytest.raises(Exception, match="proof_verifiers"):
        parse_config({"chains": {}, "proof_verifiers": ["not", "a", "table"]})
