"""A daemon never resumes one chain's state on another.

Every cursor and signing log is kept with the identity of the chain it was written for
(`ChainIdentity`: chain id + genesis hash). At start, before any watcher runs, each chain's identity
is read from its RPC endpoints and compared: a different chain (a reset testnet, a new localnet,
another chain configured under the same domain), or a cursor the chain has not reached, stops the
daemon with an error naming the chain and the command that resets its state. The first start
records the identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from relay.errors import TesseraError
from relay.interfaces import ChainAdapter, ChainIdentity


class ChainStateMismatch(TesseraError):
    """The state kept for a chain does not belong to the chain its RPC endpoints now serve."""


def reset_command(chain: str, role: str) -> str:
    """The command that drops `role`'s state for `chain` (relay/cli/operator.py: reset-chain)."""
    return f"relay reset-chain {chain} {role} --config <config>"


async def check_chain_state(adapter: ChainAdapter, *, stored: str | None, cursor: str | None,
                            save: Callable[[str], Awaitable[None] | None], state: str, reset: str) -> ChainIdentity:
    """Compare the chain behind `adapter` with the identity `stored` beside `state` (what the daemon
    keeps: "the relayer store at ...") and check `cursor` against it; record the identity when none
    was stored. Raises ChainStateMismatch, whose message names the chain and the `reset` command."""
    identity = await adapter.chain_identity()
    where = f"chains.{adapter.name} (domain {adapter.domain})"
    if stored is not None and stored != identity.encode():
        raise ChainStateMismatch(
            f"{state} was written for another chain than the one {where} now serves: it holds "
            f"{ChainIdentity.decode(stored).describe()}, the RPC endpoints serve {identity.describe()}. "
            f"If that chain was reset or replaced on purpose, drop the old state with `{reset}`; otherwise "
            f"point chains.{adapter.name}.rpc_urls back at the chain it was.")
    if cursor is not None:
        problem = await adapter.cursor_problem(cursor)
        if problem is not None:
            raise ChainStateMismatch(
                f"{state} cannot resume on {where}: {problem} (was the chain reset?). Drop the old state "
                f"with `{reset}`, or point chains.{adapter.name}.rpc_urls back at the chain it was.")
    if stored is None:
        result = save(identity.encode())
        if result is not None:
            await result
    return identity
