"""Proof verifiers: how an attester checks a TASK_RESULT before co-signing a PROOF_ATTESTATION.

Built in: proof kind 0 (none: the worker's signature only) and 1 (re-execution through the
executor's `verify`). TEE quotes and zk proofs depend on the vendor or the circuit, so their
verifiers are plugins in the `tessera.proof_verifiers` entry-point group; without one, a result
with such a proof is refused with a reason (docs/TASKS.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from relay.envelope import keccak256
from relay.log import get_logger
from relay.tasks.executors import ExecutorError, ExecutorRegistry, VerifyResult
from relay.tasks.payloads import AttestationMethod, ProofKind, TaskResult, WorkerSignatureError

PROOF_VERIFIER_GROUP = "tessera.proof_verifiers"

PROOF_KIND_NAMES = {
    ProofKind.NONE: "none",
    ProofKind.REEXECUTION: "re-execution",
    ProofKind.TEE_QUOTE: "TEE quote",
    ProofKind.ZK_PROOF: "zk proof",
}

log = get_logger("relay.tasks.proofs")


@runtime_checkable
class ProofVerifier(Protocol):
    proof_kind: ProofKind
    method: AttestationMethod  # what the PROOF_ATTESTATION will say was done

    def verify(self, result: TaskResult, *, input: bytes | None, output: bytes | None) -> VerifyResult:
        """Check `result.proof` for this result. `input`/`output` are the task's bytes when the
        attester has them (inline, or fetched from the URI and checked against the hash)."""
        ...


def _check_common(result: TaskResult, output: bytes | None) -> VerifyResult | None:
    try:
        result.verify_signature()
    except WorkerSignatureError as exc:
        return VerifyResult(False, str(exc))
    if output is not None and keccak256(output) != result.output_hash:
        return VerifyResult(False, "output bytes do not hash to the result's output_hash")
    return None


class SignatureOnlyVerifier:
    proof_kind = ProofKind.NONE
    method = AttestationMethod.SIGNATURE_ONLY

    def verify(self, result: TaskResult, *, input: bytes | None, output: bytes | None) -> VerifyResult:
        failed = _check_common(result, output)
        return failed if failed is not None else VerifyResult(True, "worker signature verifies")


@dataclass(slots=True)
class ReexecutionVerifier:
    executors: ExecutorRegistry
    proof_kind: ProofKind = ProofKind.REEXECUTION
    method: AttestationMethod = AttestationMethod.REEXECUTION

    def verify(self, result: TaskResult, *, input: bytes | None, output: bytes | None) -> VerifyResult:
        failed = _check_common(result, output)
        if failed is not None:
            return failed
        if input is None or output is None:
            return VerifyResult(False, "re-execution needs the task input and the output; fetch them from their URIs first")
        try:
            executor = self.executors.get(result.executor)
        except ExecutorError as exc:
            return VerifyResult(False, f"cannot re-execute: {exc}")
        return executor.verify(input, output)


class RefuseUnknownProof:
    """The fallback for proof kinds with no installed verifier: refuses, saying what to install."""

    method = AttestationMethod.PLUGGABLE_VERIFIER

    def __init__(self, proof_kind: ProofKind) -> None:
        self.proof_kind = proof_kind

    def verify(self, result: TaskResult, *, input: bytes | None, output: bytes | None) -> VerifyResult:
        name = PROOF_KIND_NAMES.get(self.proof_kind, str(int(self.proof_kind)))
        return VerifyResult(
            False,
            f"no verifier for proof kind {int(self.proof_kind)} ({name}) is installed; TEE and zk verifiers are "
            f"plugins: install one that registers in the {PROOF_VERIFIER_GROUP!r} entry-point group",
        )


@dataclass(slots=True)
class ProofVerifierRegistry:
    _verifiers: dict[ProofKind, ProofVerifier] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # entry point name -> why

    @classmethod
    def load(
        cls,
        executors: ExecutorRegistry,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        plugins: Iterable[EntryPoint] | None = None,
    ) -> "ProofVerifierRegistry":
        """Built-ins for kinds 0 and 1, then plugins (each called with its options as keywords);
        a plugin that fails to load is recorded in `unavailable`, the others still load."""
        options = options or {}
        registry = cls()
        registry.register(SignatureOnlyVerifier())
        registry.register(ReexecutionVerifier(executors))
        found = entry_points(group=PROOF_VERIFIER_GROUP) if plugins is None else plugins
        for ep in found:
            try:
                verifier = ep.load()(**dict(options.get(ep.name, {})))
                kind = ProofKind(verifier.proof_kind)
                if kind in (ProofKind.NONE, ProofKind.REEXECUTION):
                    raise ValueError(f"proof kind {int(kind)} is built in and cannot be replaced")
                if kind in registry._verifiers:
                    raise ValueError(f"proof kind {int(kind)} already has a verifier")
            except Exception as exc:  # a broken plugin must not take the others down
                reason = f"proof verifier plugin {ep.name!r} ({ep.value}) failed: {type(exc).__name__}: {exc}"
                registry.unavailable[ep.name] = reason
                log.warning("proof_verifier_unavailable", plugin=ep.name, reason=reason)
                continue
            registry.register(verifier)
        return registry

    def register(self, verifier: ProofVerifier) -> None:
        self._verifiers[ProofKind(verifier.proof_kind)] = verifier

    def verifier_for(self, proof_kind: ProofKind) -> ProofVerifier:
        return self._verifiers.get(ProofKind(proof_kind)) or RefuseUnknownProof(ProofKind(proof_kind))

    def check(
        self, result: TaskResult, *, input: bytes | None = None, output: bytes | None = None
    ) -> tuple[VerifyResult, AttestationMethod]:
        """Verify a result; on success the attester co-signs a PROOF_ATTESTATION with the method returned."""
        if output is None and result.output is not None:
            output = result.output
        verifier = self.verifier_for(result.proof_kind)
        # Every method starts from the worker's signature and the output hash, plugins included.
        failed = _check_common(result, output)
        if failed is not None:
            return failed, AttestationMethod(verifier.method)
        try:
            outcome = verifier.verify(result, input=input, output=output)
        except Exception as exc:  # a verifier crash is a refusal, never an attestation
            outcome = VerifyResult(False, f"verifier for proof kind {int(result.proof_kind)} failed: {type(exc).__name__}: {exc}")
        return outcome, AttestationMethod(verifier.method)
