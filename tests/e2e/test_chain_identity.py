"""Chain identity against real nodes (issue 13 item 4): two anvils with the same chain id behind the
same domain are told apart by their block 0; a relayer store written for one refuses the other, and
a cursor ahead of a chain's head is refused too, each with the chain's name and the reset command.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.evm.devnet import running_anvil
from adapters.evm.gateway import EvmAdapter
from relay.chainstate import ChainStateMismatch, check_chain_state, reset_command
from relay.config import EvmChain
from relay.store import Store
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.e2e]

DOMAIN = 31337
GATEWAY = "0x" + "11" * 20


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "relayer.db")
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database("identity")


def adapter(rpc_url: str) -> EvmAdapter:
    chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=31337, rpc_urls=[rpc_url], contracts={"Gateway": GATEWAY})
    return EvmAdapter.from_config("evm", chain)


async def check(store: Store, evm: EvmAdapter) -> None:
    await check_chain_state(evm, stored=await store.chain_identity(DOMAIN), cursor=await store.get_cursor(f"watch:{DOMAIN}"),
                            save=lambda identity: store.set_chain_identity(DOMAIN, identity),
                            state="the relayer store", reset=reset_command("evm", "--relayer"))


async def test_a_relayer_store_refuses_another_chain_behind_the_same_domain(db: str) -> None:
    # Anvil's block 0 depends on its genesis timestamp: another chain with the same id (a reset
    # testnet, another network) has another one.
    async with running_anvil() as first, running_anvil(extra_args=["--timestamp", "1700000000"]) as second:
        a, b = adapter(first.rpc_url), adapter(second.rpc_url)
        store = await Store.open(db)
        try:
            identity_a, identity_b = await a.chain_identity(), await b.chain_identity()
            assert identity_a.chain_id == identity_b.chain_id == "31337"
            assert identity_a.genesis != identity_b.genesis  # the same chain id, another chain
            await check(store, a)  # the first start records the identity
            assert await store.chain_identity(DOMAIN) == identity_a.encode()
            await store.set_cursor(f"watch:{DOMAIN}", "0")
            await check(store, a)  # and the next start on the same chain passes
            with pytest.raises(ChainStateMismatch) as refused:
                await check(store, b)
            message = str(refused.value)
            assert "chains.evm (domain 31337)" in message and identity_b.genesis in message
            assert "relay reset-chain evm --relayer" in message
            # After the reset the other chain is accepted, and recorded.
            await store.forget_chain(DOMAIN)
            await check(store, b)
            assert await store.chain_identity(DOMAIN) == identity_b.encode()
        finally:
            await store.close()
            await a.close()
            await b.close()


async def test_a_cursor_ahead_of_the_head_is_refused(db: str) -> None:
    async with running_anvil() as node:
        evm = adapter(node.rpc_url)
        store = await Store.open(db)
        try:
            await check(store, evm)
            await store.set_cursor(f"watch:{DOMAIN}", "133")  # a block the chain has not reached
            with pytest.raises(ChainStateMismatch, match=r"block 133, ahead of the chain's head 0.*reset-chain evm"):
                await check(store, evm)
        finally:
            await store.close()
            await evm.close()
