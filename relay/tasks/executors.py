"""Executor plugins: the interface, the built-in `echo`, and the registry that loads built-ins and
third-party plugins from the `tessera.executors` entry-point group (docs/TASKS.md)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from relay.errors import TesseraError
from relay.log import get_logger
from relay.tasks.payloads import TaskPayloadError, check_executor_id

EXECUTOR_GROUP = "tessera.executors"

# Built-ins by id -> "module:attribute", the same strings the lead registers in pyproject's
# entry-point group, so an installed tessera lists them there too.
BUILTIN_EXECUTORS: dict[str, str] = {
    "echo": "relay.tasks.executors:EchoExecutor",
    "embed": "relay.tasks.embed:EmbedExecutor",
    "http": "relay.tasks.chat:ChatCompletionsExecutor",
    "sentiment": "relay.tasks.sentiment:SentimentExecutor",
}

log = get_logger("relay.tasks")


class ExecutorError(TesseraError):
    """An executor could not be found, built or run."""


class UnknownExecutorError(ExecutorError):
    """No installed executor has the requested id."""


class ExecutorUnavailableError(ExecutorError):
    """The executor is known but cannot run here (missing extra, failed plugin, missing config)."""


class ExecutorInputError(ExecutorError):
    """The task input is not what the executor accepts."""


class ExecutorTimeoutError(ExecutorError):
    """The executor did not finish before the task deadline or its own timeout."""


class ExecutorOutputError(ExecutorError):
    """The executor (or the server behind it) produced output the protocol cannot carry."""


class ExecutorUpstreamError(ExecutorError):
    """The server or service behind an executor answered with an error."""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    reason: str = ""
    score: float | None = None  # e.g. cosine similarity for tolerance checks


@runtime_checkable
class Executor(Protocol):
    id: str  # at most 16 printable ASCII characters; goes on the wire in TASK_REQUEST
    deterministic: bool  # True: re-execution yields identical bytes, so attesters can check by re-running

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        """Execute the task. `deadline` is a unix time in seconds after which the result is useless."""
        ...

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        """Check `output` for `input` (exact re-execution, or a tolerance check when not deterministic)."""
        ...


class EchoExecutor:
    id = "echo"
    deterministic = True

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        return input

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        return VerifyResult(True) if output == input else VerifyResult(False, "echo output differs from its input")


def verify_by_reexecution(executor_id: str, expected: bytes, output: bytes) -> VerifyResult:
    if output == expected:
        return VerifyResult(True, "re-execution gave identical bytes")
    return VerifyResult(False, f"{executor_id}: re-execution gave different bytes ({len(expected)} vs {len(output)})")


@dataclass(slots=True)
class _Entry:
    id: str
    source: str  # "builtin" or the distribution/entry point that provided it
    factory: Any
    options: Mapping[str, Any]
    instance: Executor | None = None


@dataclass(slots=True)
class ExecutorRegistry:
    """Executors by id. Factories are loaded eagerly (so `installed` is honest); instances are
    built on first use with their `[executors.<id>]` options as keyword arguments."""

    _entries: dict[str, _Entry] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # id -> why, including what to do

    @classmethod
    def load(
        cls,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        plugins: Iterable[EntryPoint] | None = None,
        builtins: Mapping[str, str] = BUILTIN_EXECUTORS,
    ) -> "ExecutorRegistry":
        """Load built-ins, then the entry points of `tessera.executors` (or `plugins` if given).
        A plugin that fails to load is recorded in `unavailable`; the others still load."""
        options = options or {}
        registry = cls()
        for executor_id, target in builtins.items():
            registry._load_one(executor_id, target, "builtin", lambda t=target: _import_target(t), options)
        found = entry_points(group=EXECUTOR_GROUP) if plugins is None else plugins
        for ep in found:
            if ep.name in builtins and ep.value.replace(" ", "") == builtins[ep.name]:
                continue  # tessera's own registration of a built-in
            source = _describe(ep)
            if ep.name in registry._entries or ep.name in builtins:
                # Keyed by the plugin, not the id: the id itself stays served by whoever has it.
                registry._fail(f"{ep.name} ({ep.value})", f"{source} uses the id {ep.name!r}, which is already taken; rename it")
                continue
            registry._load_one(ep.name, ep.value, source, ep.load, options)
        unknown_options = set(options) - set(registry._entries) - set(registry.unavailable)
        for executor_id in sorted(unknown_options):
            log.warning("executor_options_unused", executor=executor_id, reason="no such executor is installed")
        return registry

    def _load_one(self, executor_id: str, target: str, source: str, load: Any, options: Mapping[str, Any]) -> None:
        try:
            check_executor_id(executor_id)
        except TaskPayloadError as exc:
            self._fail(executor_id, f"{source} registers an invalid executor id: {exc}")
            return
        try:
            factory = load()
        except Exception as exc:  # a broken plugin must not take the others down
            self._fail(executor_id, f"{source} failed to load {target}: {type(exc).__name__}: {exc}")
            return
        reason = _unavailable_reason(factory)
        if reason:
            # An optional built-in without its extra is normal, not a warning.
            self._fail(executor_id, reason, quiet=source == "builtin")
            return
        self._entries[executor_id] = _Entry(executor_id, source, factory, dict(options.get(executor_id, {})))

    def _fail(self, executor_id: str, reason: str, *, quiet: bool = False) -> None:
        self.unavailable[executor_id] = reason
        (log.info if quiet else log.warning)("executor_unavailable", executor=executor_id, reason=reason)

    @property
    def installed(self) -> list[str]:
        return sorted(self._entries)

    def register(self, executor: Executor) -> None:
        """Add a ready instance (tests, embedding applications)."""
        check_executor_id(executor.id)
        self.unavailable.pop(executor.id, None)
        self._entries[executor.id] = _Entry(executor.id, "registered", None, {}, executor)

    def get(self, executor_id: str) -> Executor:
        entry = self._entries.get(executor_id)
        if entry is None:
            if executor_id in self.unavailable:
                raise ExecutorUnavailableError(f"executor {executor_id!r} is unavailable: {self.unavailable[executor_id]}")
            raise UnknownExecutorError(self._unknown_message(executor_id))
        if entry.instance is None:
            try:
                instance = entry.factory(**entry.options)
            except ExecutorError:
                raise
            except Exception as exc:
                raise ExecutorUnavailableError(
                    f"executor {executor_id!r} ({entry.source}) could not start: {type(exc).__name__}: {exc}; "
                    f"check its options in [executors.{executor_id}]"
                ) from exc
            if getattr(instance, "id", None) != executor_id:
                raise ExecutorUnavailableError(
                    f"executor registered as {executor_id!r} ({entry.source}) reports id {getattr(instance, 'id', None)!r}; "
                    "the entry-point name and the executor's id must match"
                )
            entry.instance = instance
        return entry.instance

    def _unknown_message(self, executor_id: str) -> str:
        message = f"unknown executor {executor_id!r}; installed: {', '.join(self.installed) or 'none'}"
        if self.unavailable:
            message += "; unavailable: " + "; ".join(f"{k} ({v})" for k, v in sorted(self.unavailable.items()))
        return message

    def __contains__(self, executor_id: object) -> bool:
        return executor_id in self._entries


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _unavailable_reason(factory: Any) -> str | None:
    # Optional hook: a factory whose dependencies are optional says why it cannot run here.
    hook = getattr(factory, "unavailable_reason", None)
    if hook is None:
        return None
    try:
        return hook()
    except Exception as exc:
        return f"availability check failed: {type(exc).__name__}: {exc}"


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return f"plugin {ep.name!r}" + (f" from {name}" if name else "") + f" ({ep.value})"

