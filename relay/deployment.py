"""The deployment file: the addresses `relay deploy` found or deployed on each chain, kept apart from
the hand-written config, which includes it with one top-level line:

    deployment = "deployment.toml"        # relative to the config file

The file holds, per chain, only what a deployment decides (EVM `contracts`, Solana `program_id` and
`accounts`) under `[chains.<name>]`, plus what `relay deploy` reports about it under
`[deployed.<name>]` (deployer, owner, upgrade authority, when), which loading ignores. Loading a config
merges the file's chain fields into the config's chain tables; the file wins over the config for an
address both name (the config may still hold an example's placeholder), so an edited address in the
file is what every daemon and `relay config check --online` see.

Chain-free on purpose: relay.config includes it, `relay deploy` (relay/cli/deploy.py) updates it,
and the chain packages' deployment code (adapters/*/deployment.py) reports into it through the
`DeployRequest` / `DeployReport` types below.
"""

from __future__ import annotations

import fcntl
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from attest.files import write_atomic
from relay.errors import ConfigError, TesseraError

INCLUDE_KEY = "deployment"
DEFAULT_FILE = "deployment.toml"
# The fields of a [chains.<name>] table a deployment decides; nothing else may come from the file.
ADDRESS_FIELDS = ("contracts", "program_id", "accounts")
_HEADER = ("# Written by `relay deploy`: the addresses of Tessera's on-chain code per chain. The config includes\n"
           "# it (deployment = \"...\"). Edit an address only to point at another deployment of the same code:\n"
           "# `relay config check --online` and `relay deploy` check every address's code.\n")


class DeploymentError(TesseraError):
    """A deployment cannot go on; the message says why and what to do."""


# --- what a chain's deployment code is asked and answers (adapters/*/deployment.py) ---------------


@dataclass(frozen=True)
class DeployRequest:
    """What `relay deploy` asks a chain driver to make true on its chain.

    - `deployer`: the KeyRef of the account that pays and signs (relay.config.KeyRef).
    - `committee`: the committee the verifier / program must hold (attest.committee.Committee).
    - `feeds`: the config's [feeds] tables (EVM: a FeedStore registering them, an aggregator each).
    - `owner`: who ends up owning what the deployment owns — EVM: the address proposed as owner of the
      Gateway and FeedStore (two-step: it accepts); Solana: the public key proposed as the program's
      admin (ProposeAdmin; it accepts with AcceptAdmin). None: the deployer keeps them.
    - `upgrade_authority` (Solana): the program's upgrade authority at the end (None: the deployer).
    - `recorded`: the chain's address fields as the config and the deployment file hold them now.
    - `keys_dir`: where a chain keeps deployment key material it creates (the Solana program keypair).
    - `record`: called with the chain's address fields after every step that changed them, so a
      deployment killed midway resumes from what was recorded (the localnet passes a no-op).
    """

    deployer: Any
    committee: Any
    feeds: Mapping[str, Any]
    owner: str | None
    upgrade_authority: str | None
    recorded: Mapping[str, Any]
    keys_dir: Path
    record: Callable[[dict[str, Any]], None]
    # Seconds after a task's deadline before reclaim opens on the task board (None: the contract's
    # default); the localnet shortens it.
    task_settlement_grace_s: int | None = None


@dataclass(frozen=True)
class DeployStep:
    """One thing a deployment looked at: `action` is "deployed", "found", "initialized",
    "configured", "transferred", "proposed" or "kept"; `cost` in the chain's unit (gas, lamports) when it sent
    something, else 0; `fee` what it paid in the smallest unit of the chain's token."""

    what: str
    action: str
    address: str = ""
    cost: int = 0
    fee: int = 0
    note: str = ""


@dataclass
class DeployReport:
    chain: str
    unit: str  # what `cost` counts: "gas" or "lamports"
    token: str  # the smallest unit `fee` counts: "wei" or "lamports"
    fields: dict[str, Any] = field(default_factory=dict)  # the chain's address fields at the end
    steps: list[DeployStep] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # deployer, owner, ... for [deployed.<name>]
    notes: list[str] = field(default_factory=list)  # what the operator must still do

    @property
    def sent(self) -> list[DeployStep]:
        return [s for s in self.steps if s.action != "found" and s.action != "kept"]

    @property
    def total_cost(self) -> int:
        return sum(s.cost for s in self.steps)

    @property
    def total_fee(self) -> int:
        return sum(s.fee for s in self.steps)


# --- the file ---------------------------------------------------------------------------------


def read_deployment(path: Path) -> dict[str, Any]:
    """The file's content ({"chains": {...}, "deployed": {...}}); a missing file is an empty one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"chains": {}, "deployed": {}}
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"deployment file {path} is not valid TOML: {exc}; fix it or delete it and run "
                          "`relay deploy` again (it finds what is deployed only through this file)") from None
    unknown = set(data) - {"chains", "deployed"}
    if unknown:
        raise ConfigError(f"deployment file {path}: unexpected top-level keys {sorted(unknown)}; it holds only "
                          "[chains.<name>] address fields and [deployed.<name>] notes")
    chains = data.setdefault("chains", {})
    data.setdefault("deployed", {})
    for name, table in chains.items():
        if not isinstance(table, dict):
            raise ConfigError(f"deployment file {path}: chains.{name} is not a table")
        extra = set(table) - set(ADDRESS_FIELDS)
        if extra:
            raise ConfigError(f"deployment file {path}: chains.{name} holds {sorted(extra)}; a deployment file "
                              f"sets only {', '.join(ADDRESS_FIELDS)} (put everything else in the config)")
    return data


def update_deployment(path: Path, chain: str, fields: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
    """Replaces `chain`'s address fields (and notes) in the file, atomically and under a lock, so two
    `relay deploy` runs for different chains of one file never lose each other's addresses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_deployment(path)
        data["chains"][chain] = {k: v for k, v in fields.items() if k in ADDRESS_FIELDS and v not in (None, {}, "")}
        if meta is not None:
            data["deployed"][chain] = {k: v for k, v in meta.items() if v is not None}
        write_atomic(path, _HEADER + tomli_w.dumps(data), 0o644)


def included_path(data: Mapping[str, Any], config_path: Path) -> Path | None:
    """The deployment file a config's raw TOML names (relative to the config file), if any."""
    value = data.get(INCLUDE_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{config_path}: `{INCLUDE_KEY}` must be the path of a deployment file, e.g. "
                          f'{INCLUDE_KEY} = "{DEFAULT_FILE}"')
    path = Path(value)
    return path if path.is_absolute() else config_path.parent / path


def merge_deployment(data: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """The config's raw TOML with its deployment file's addresses merged in and the include key
    removed (what relay.config.load_config validates). A named file that does not exist yet merges
    nothing: before the first `relay deploy`, `relay config check` names the missing addresses."""
    path = included_path(data, config_path)
    data = {k: v for k, v in data.items() if k != INCLUDE_KEY}
    if path is None:
        return data
    deployment = read_deployment(path)
    chains = dict(data.get("chains") or {})
    for name, fields in deployment["chains"].items():
        if name not in chains:
            raise ConfigError(f"deployment file {path} has addresses for chain {name!r}, which {config_path} does "
                              f"not configure (chains: {', '.join(sorted(chains)) or 'none'}): add [chains.{name}] "
                              "to the config or remove the chain from the deployment file")
        table = dict(chains[name])
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(table.get(key), dict):
                table[key] = {**table[key], **value}
            else:
                table[key] = value
        chains[name] = table
    data["chains"] = chains
    return data




def include_in_config(config_path: Path, deployment_path: Path) -> bool:
    """Adds `deployment = "<path>"` to the config file when it names none (as a top-level key, above
    its first table, keeping every comment); returns whether it changed the file. A config that names
    another deployment file is an error: one config, one deployment file."""
    text = config_path.read_text()
    data = tomllib.loads(text)
    current = included_path(data, config_path)
    if current is not None:
        if current.resolve() != deployment_path.resolve():
            raise DeploymentError(f"{config_path} includes deployment file {current}, not {deployment_path}: leave "
                                  "--out away to write into the included one, or change the config's "
                                  f"`{INCLUDE_KEY}` line")
        return False
    try:
        relative = deployment_path.resolve().relative_to(config_path.parent.resolve())
    except ValueError:
        relative = deployment_path.resolve()
    line = f"{INCLUDE_KEY} = {tomli_w.dumps({'x': str(relative)}).split('=', 1)[1].strip()}  # written by `relay deploy`\n"
    lines = text.splitlines(keepends=True)
    # Top-level keys must come before the first table header: insert after the leading comments.
    at = 0
    while at < len(lines) and (lines[at].lstrip().startswith("#") or not lines[at].strip()):
        at += 1
    new_text = "".join(lines[:at]) + line + ("\n" if at < len(lines) else "") + "".join(lines[at:])
    tomllib.loads(new_text)  # never write a config that no longer parses
    write_atomic(config_path, new_text, config_path.stat().st_mode & 0o777)
    return True


def deployment_meta(report: DeployReport, **extra: Any) -> dict[str, Any]:
    return {**report.meta, **extra, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
