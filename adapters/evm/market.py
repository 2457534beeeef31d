"""The localnet market: two mock ERC-20s in a constant-product pool whose price the `evm_pool` feed
source reads, and a simulator that moves it with real swap transactions.

The simulator follows a mean-reverting random walk (log price, Ornstein-Uhlenbeck): every step it
draws the next target price and swaps exactly what moves the pool there, so the pool's price is a
believable series around the starting price instead of drifting off without bound.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3

from adapters.evm import deploy as evm_deploy
from adapters.evm.rpc import make_client
from relay.errors import TesseraError
from relay.log import get_logger

log = get_logger("market")

POOL = "ConstantProductPool"
TOKEN = "MockToken"
FEE = Decimal("0.997")  # the pool keeps 0.3 % of every input
_MINT = 10**30  # raw units minted to the simulator's account for each token: enough for any walk


class MarketError(TesseraError):
    """The market cannot be deployed or simulated."""


@dataclass(frozen=True, slots=True)
class Market:
    pool: str
    base: str  # token0
    quote: str  # token1
    base_decimals: int
    quote_decimals: int

    def contracts(self) -> dict[str, str]:
        """The names they have under `[chains.<evm>.contracts]`."""
        return {"MarketPool": self.pool, "MarketBase": self.base, "MarketQuote": self.quote}


async def deploy_market(
    w3: AsyncWeb3,
    account: LocalAccount | str,
    *,
    price: Decimal | str = Decimal("3456.5"),
    base_liquidity: Decimal | str = Decimal("1000"),
    base: tuple[str, str, int] = ("Mock Ether", "mETH", 18),
    quote: tuple[str, str, int] = ("Mock Dollar", "mUSD", 6),
) -> Market:
    """Deploys base and quote MockTokens and a ConstantProductPool holding `base_liquidity` base
    tokens against `price` quote tokens each (so its spot price starts at `price`)."""
    signer = Account.from_key(account) if isinstance(account, str) else account
    price, base_liquidity = Decimal(price), Decimal(base_liquidity)
    if price <= 0 or base_liquidity <= 0:
        raise MarketError("price and base_liquidity must be positive")
    base_addr = await evm_deploy.deploy(w3, signer, TOKEN, *base)
    quote_addr = await evm_deploy.deploy(w3, signer, TOKEN, *quote)
    pool_addr = await evm_deploy.deploy(w3, signer, POOL, base_addr, quote_addr)
    amount0 = int(base_liquidity * 10 ** base[2])
    amount1 = int(base_liquidity * price * 10 ** quote[2])
    for address, amount in ((base_addr, amount0), (quote_addr, amount1)):
        token = evm_deploy.contract(w3, TOKEN, address)
        await evm_deploy.transact(w3, signer, token.functions.mint(signer.address, amount))
        await evm_deploy.transact(w3, signer, token.functions.approve(pool_addr, amount))
    pool = evm_deploy.contract(w3, POOL, pool_addr)
    await evm_deploy.transact(w3, signer, pool.functions.addLiquidity(amount0, amount1))
    market = Market(pool_addr, base_addr, quote_addr, base[2], quote[2])
    log.info("market deployed", price=str(price), **market.contracts())
    return market


async def pool_price(w3: AsyncWeb3, pool_address: str, base_decimals: int, quote_decimals: int) -> Decimal:
    """Quote tokens per base token at the head block."""
    pool = evm_deploy.contract(w3, POOL, pool_address)
    reserve0, reserve1, _ = await pool.functions.getReserves().call()
    if reserve0 == 0:
        raise MarketError(f"pool {pool_address} has no liquidity")
    return (Decimal(reserve1) / 10**quote_decimals) / (Decimal(reserve0) / 10**base_decimals)


@dataclass(frozen=True, slots=True)
class Step:
    target: Decimal  # the walk's price for this step
    token_in: str
    amount_in: int
    tx: str
    price_after: Decimal


class MarketSimulator:
    """Sends one swap every `interval_ms` from its own account (real transactions), moving the pool
    toward a mean-reverting random walk: d(log p) = θ·(log p₀ − log p) + σ·N(0, 1) per step."""

    def __init__(
        self,
        w3: AsyncWeb3,
        account: LocalAccount | str,
        pool_address: str,
        *,
        interval_ms: int = 1000,
        volatility_bps: float = 20.0,  # σ per step
        reversion: float = 0.05,  # θ per step
        seed: int | None = None,
    ) -> None:
        if interval_ms <= 0 or volatility_bps < 0 or not 0 <= reversion <= 1:
            raise MarketError("interval_ms must be > 0, volatility_bps ≥ 0 and reversion in 0..1")
        self.w3 = w3
        self.account = Account.from_key(account) if isinstance(account, str) else account
        self.pool = evm_deploy.contract(w3, POOL, pool_address)
        self.interval_ms = interval_ms
        self.sigma = volatility_bps / 10_000
        self.reversion = reversion
        self.rng = random.Random(seed)
        self.steps: list[Step] = []
        self._anchor: float | None = None  # log p₀
        self._tokens: tuple[Any, Any] | None = None
        self._decimals: tuple[int, int] = (18, 18)
        self._owns_provider = False

    @classmethod
    def connect(cls, rpc_url: str, account: LocalAccount | str, pool_address: str, **options: Any) -> "MarketSimulator":
        """A simulator with its own connection to `rpc_url` (closed by `close`)."""
        w3 = make_client(rpc_url, 15.0)  # kept-alive connections (adapters/evm/rpc.py)
        simulator = cls(w3, account, pool_address, **options)
        simulator._owns_provider = True
        return simulator

    async def close(self) -> None:
        if self._owns_provider:
            await self.w3.provider.disconnect()

    async def setup(self) -> None:
        """Mints both tokens to the simulator's account and approves the pool once."""
        if self._tokens is not None:
            return
        token0 = evm_deploy.contract(self.w3, TOKEN, await self.pool.functions.token0().call())
        token1 = evm_deploy.contract(self.w3, TOKEN, await self.pool.functions.token1().call())
        self._tokens = (token0, token1)
        self._decimals = (await token0.functions.decimals().call(), await token1.functions.decimals().call())
        for token in self._tokens:
            if await token.functions.balanceOf(self.account.address).call() < _MINT // 2:
                await evm_deploy.transact(self.w3, self.account, token.functions.mint(self.account.address, _MINT))
            await evm_deploy.transact(self.w3, self.account, token.functions.approve(self.pool.address, 2**256 - 1))
        self._anchor = math.log(await self.raw_price())

    async def raw_price(self) -> float:
        """token1 per token0 in raw units (what the swap maths works in)."""
        reserve0, reserve1, _ = await self.pool.functions.getReserves().call()
        if reserve0 == 0 or reserve1 == 0:
            raise MarketError(f"pool {self.pool.address} has no liquidity: deploy_market adds some")
        return reserve1 / reserve0

    async def price(self) -> Decimal:
        reserve0, reserve1, _ = await self.pool.functions.getReserves().call()
        d0, d1 = self._decimals
        return (Decimal(reserve1) / 10**d1) / (Decimal(reserve0) / 10**d0)

    async def step(self) -> Step | None:
        """One swap toward the walk's next price; None when the move is too small to trade."""
        await self.setup()
        assert self._tokens is not None and self._anchor is not None
        reserve0, reserve1, _ = await self.pool.functions.getReserves().call()
        current = math.log(reserve1 / reserve0)
        target = current + self.reversion * (self._anchor - current) + self.sigma * self.rng.gauss(0.0, 1.0)
        k = Decimal(reserve0) * Decimal(reserve1)
        target_price = Decimal(math.exp(target))
        if target > current:  # buy base with quote: reserve1 grows to sqrt(k·p')
            token_in, amount = self._tokens[1], (k * target_price).sqrt() - reserve1
        else:  # sell base: reserve0 grows to sqrt(k/p')
            token_in, amount = self._tokens[0], (k / target_price).sqrt() - reserve0
        amount_in = int(amount / FEE)  # the fee stays in the pool: put in a little more
        if amount_in <= 0:
            return None
        receipt = await evm_deploy.transact(
            self.w3, self.account, self.pool.functions.swap(token_in.address, amount_in, 0, self.account.address)
        )
        d0, d1 = self._decimals
        step = Step(target_price * Decimal(10) ** (d0 - d1), token_in.address, amount_in,
                    "0x" + bytes(receipt["transactionHash"]).hex(), await self.price())
        self.steps.append(step)
        log.info("market_swap", token_in=token_in.address, amount_in=amount_in, price=f"{step.price_after:.4f}",
                 tx=step.tx)
        return step

    async def run(self, steps: int | None = None) -> None:
        """Steps every interval until cancelled (or `steps` swaps); a failed swap is logged and skipped."""
        await self.setup()
        done = 0
        while steps is None or done < steps:
            started = time.monotonic()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed swap must not stop the market
                log.warning("market_swap_failed", error=str(exc))
            done += 1
            await asyncio.sleep(max(0.0, self.interval_ms / 1000 - (time.monotonic() - started)))
