"""`relay deploy` on an EVM chain: Tessera's contracts on any RPC endpoint, from a deployer key,
idempotently.

What a deployment makes true, in order (each contract deployed by the same function the localnet
calls: adapters/evm/deploy.py `deploy`, gateway.py `deploy_gateway`, taskboard.py
`deploy_task_board_v2`, feeds.py `deploy_feeds`):

  CommitteeVerifier   bound to the chain's domain, holding the config's committee
  Gateway             bound to the verifier
  TaskBoardV2         bound to the gateway (verdicts from the committee)
  FeedStore           bound to the verifier, every [feeds] table registered, one TesseraAggregator each
  fees                TaskBoardV2 marked a flat-fee sender of the Gateway (it forwards the flat fee)
  ownership           Gateway and FeedStore handed to --owner

Before sending anything it checks the endpoint (reachable, the configured chain id), every address
already recorded (its code against the forge artifact, immutables masked, as `relay config check
--online` does; the links between contracts; the verifier's committee) and the deployer's balance.
A recorded contract with the right code is kept; one with no code is deployed again; one with other
code stops the deployment with the address and what to do. Each contract is recorded (`request.record`)
as soon as it is mined, so a run killed midway loses at most the contract in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm import deploy as evm_deploy
from adapters.evm.checks import artifact_name, code_problem
from adapters.evm.feeds import FEED_STORE, aggregator_key, deploy_feeds
from adapters.evm.gateway import GATEWAY, deploy_gateway, evm_key
from adapters.evm.taskboard import TASK_BOARD_V2, deploy_task_board_v2
from adapters.checks import committee_problems
from relay.config import EvmChain
from relay.deployment import DeploymentError, DeployReport, DeployRequest, DeployStep

VERIFIER = "CommitteeVerifier"
# Gas each unit takes, measured on anvil (docs/BENCHMARKS.md "Deployment cost"), with headroom: only
# the balance check before deploying uses them, so an unfunded deployer is told before it pays for
# half a deployment.
GAS_ESTIMATE = {VERIFIER: 2_500_000, GATEWAY: 4_800_000, TASK_BOARD_V2: 5_500_000, FEED_STORE: 2_800_000,
                "feed": 600_000, "ownership": 50_000}
RPC_TIMEOUT_S = 15.0


async def deploy_tessera(name: str, chain: EvmChain, request: DeployRequest) -> DeployReport:
    """Deploys what is missing of Tessera on `chain` (see the module docstring); returns what it
    found, deployed and spent (gas per contract, wei)."""
    if request.upgrade_authority is not None:
        raise DeploymentError(f"chains.{name} is an EVM chain: --upgrade-authority is for a Solana program; "
                              "EVM contracts are not upgradeable, hand them over with --owner")
    key = evm_key(request.deployer, "--key")
    assert key is not None
    account: LocalAccount = Account.from_key(key)
    owner = _owner_address(request.owner)
    url = chain.rpc_urls[0]
    w3 = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
    report = DeployReport(chain=name, unit="gas", token="wei",
                          meta={"kind": "evm", "chain_id": chain.chain_id, "deployer": account.address,
                                "owner": owner or account.address})
    try:
        await _check_endpoint(name, chain, w3)
        await asyncio.to_thread(evm_deploy.ensure_built)  # forge build when the sources changed
        run = _Run(name, chain, w3, account, request, report)
        await run.deploy_all(owner)
    finally:
        await w3.provider.disconnect()
    return report


def _owner_address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return AsyncWeb3.to_checksum_address(text)
    except ValueError:
        raise DeploymentError(f"--owner {text!r} is not an EVM address: give the 0x-prefixed 20-byte address of the "
                              "account (or multisig) that will own the Gateway and the FeedStore") from None


async def _check_endpoint(name: str, chain: EvmChain, w3: AsyncWeb3) -> None:
    url = chain.rpc_urls[0]
    try:
        chain_id = await asyncio.wait_for(w3.eth.chain_id, RPC_TIMEOUT_S)
    except Exception as exc:  # transport, HTTP status, timeout: the endpoint is the problem
        raise DeploymentError(f"chains.{name}.rpc_urls[0] ({url}) does not answer: {exc or type(exc).__name__}; "
                              "check the URL and that the node is up") from None
    if chain_id != chain.chain_id:
        raise DeploymentError(f"chains.{name}.rpc_urls[0] ({url}) serves chain id {chain_id}, but chains.{name}.chain_id "
                              f"is {chain.chain_id}: point rpc_urls at the right network, or fix chain_id")


class _Run:
    def __init__(self, name: str, chain: EvmChain, w3: AsyncWeb3, account: LocalAccount, request: DeployRequest,
                 report: DeployReport) -> None:
        self.name, self.chain, self.w3, self.account = name, chain, w3, account
        self.request, self.report = request, report
        self.contracts: dict[str, str] = dict(request.recorded.get("contracts") or {})

    # --- recorded addresses ---------------------------------------------------------------

    async def _usable(self, key: str) -> bool:
        """Whether the recorded `key` can be kept: right code (else DeploymentError), or no code at
        all (then it is deployed again)."""
        address = self.contracts.get(key)
        if address is None:
            return False
        code = bytes(await self.w3.eth.get_code(self.w3.to_checksum_address(address)))
        if not code:
            self.report.notes.append(f"contracts.{key} ({address}) had no code on chain {self.name}: deployed a new one")
            return False
        if (problem := code_problem(key, address, code)) is not None:
            raise DeploymentError(f"chains.{self.name}.{problem}. Fix the address in the deployment file, or remove "
                                  "the entry to deploy a new one")
        return True

    async def _link(self, key: str, getter: str, dependency: str) -> None:
        linked = await evm_deploy.contract(self.w3, artifact_name(key), self.contracts[key]).get_function_by_name(getter)().call()
        expected = self.contracts[dependency]
        if str(linked).lower() != expected.lower():
            raise DeploymentError(f"chains.{self.name}.contracts.{key} ({self.contracts[key]}) is bound to {dependency} "
                                  f"{linked}, not contracts.{dependency} {expected}: the deployment file mixes two "
                                  f"deployments; remove contracts.{key} to deploy one bound to {expected}")

    async def _plan(self) -> list[str]:
        """The units to deploy, after checking every recorded one."""
        missing: list[str] = []
        if await self._usable(VERIFIER):
            epoch, _, _, group_key = await evm_deploy.contract(
                self.w3, VERIFIER, self.contracts[VERIFIER]).functions.currentCommittee().call()
            problems = committee_problems(f"chains.{self.name}.contracts.{VERIFIER} ({self.contracts[VERIFIER]})", epoch,
                                          bytes(group_key), self.request.committee)
            if problems:
                raise DeploymentError(problems[0] + "; or remove contracts.CommitteeVerifier from the deployment file "
                                      "to deploy a new verifier (and everything bound to it)")
        else:
            missing.append(VERIFIER)
        for key, getter, dependency in ((GATEWAY, "verifier", VERIFIER), (TASK_BOARD_V2, "gateway", GATEWAY),
                                        (FEED_STORE, "verifier", VERIFIER)):
            if dependency in missing or not await self._usable(key):
                missing.append(key)
            else:
                await self._link(key, getter, dependency)
        if FEED_STORE not in missing:
            for feed_id in self.request.feeds:
                agg = aggregator_key(feed_id)
                if not await self._usable(agg):
                    # A new feed in the config: its registration needs the store's owner, so the
                    # whole store is deployed again with every feed (the old one is left as it is).
                    self.report.notes.append(f"feed {feed_id!r} has no aggregator: deployed a new FeedStore with every "
                                             "[feeds] table; point feed readers at the new addresses")
                    missing.append(FEED_STORE)
                    break
                await self._link(agg, "store", FEED_STORE)
        return missing

    # --- sending ----------------------------------------------------------------------------

    async def _metered(self, what: str, action: str, send: Callable[[], Awaitable[Any]], address: str = "",
                       note: str = "") -> Any:
        receipts: list[Any] = []
        token = evm_deploy.GAS_METER.set(receipts)
        try:
            result = await send()
        finally:
            evm_deploy.GAS_METER.reset(token)
        gas = sum(int(r["gasUsed"]) for r in receipts)
        fee = sum(int(r["gasUsed"]) * int(r.get("effectiveGasPrice", 0)) for r in receipts)
        self.report.steps.append(DeployStep(what, action, address or (result if isinstance(result, str) else ""), gas,
                                            fee, note))
        return result

    def _record(self) -> None:
        self.report.fields = {"contracts": dict(self.contracts)}
        self.request.record(self.report.fields)

    async def _check_funds(self, missing: list[str], transfers: int) -> None:
        gas = sum(GAS_ESTIMATE[k] for k in missing) + transfers * GAS_ESTIMATE["ownership"]
        if FEED_STORE in missing:
            gas += len(self.request.feeds) * GAS_ESTIMATE["feed"]
        if gas == 0:
            return
        balance = await self.w3.eth.get_balance(self.account.address)
        price = await self.w3.eth.gas_price
        needed = gas * price
        if balance < needed:
            raise DeploymentError(
                f"the deployer {self.account.address} holds {balance / 1e18:.6f} ETH on chain {self.name}, but deploying "
                f"{', '.join(missing) or 'the ownership transfers'} takes about {gas:,} gas, {needed / 1e18:.6f} ETH at "
                f"the current gas price ({price / 1e9:.3f} gwei): fund it (a faucet on a testnet) and run again")

    async def deploy_all(self, owner: str | None) -> None:
        missing = await self._plan()
        for key in (VERIFIER, GATEWAY, TASK_BOARD_V2, FEED_STORE):
            if key not in missing:
                self.report.steps.append(DeployStep(key, "found", self.contracts[key]))
        transfers = (0 if owner is None else 2) + 1  # + the task board as a flat-fee sender
        await self._check_funds(missing, transfers)
        c, chain, w3, account = self.contracts, self.chain, self.w3, self.account
        if VERIFIER in missing:
            committee = self.request.committee
            c[VERIFIER] = await self._metered(VERIFIER, "deployed", lambda: evm_deploy.deploy(
                w3, account, VERIFIER, chain.domain, committee.epoch, committee.n, committee.t, committee.group_key))
            self._record()
        if GATEWAY in missing:
            c[GATEWAY] = await self._metered(GATEWAY, "deployed",
                                             lambda: deploy_gateway(w3, account, c[VERIFIER], chain.domain))
            self._record()
        if TASK_BOARD_V2 in missing:
            grace = {} if self.request.task_settlement_grace_s is None else {
                "settlement_grace": self.request.task_settlement_grace_s}
            c[TASK_BOARD_V2] = await self._metered(TASK_BOARD_V2, "deployed",
                                                   lambda: deploy_task_board_v2(w3, account, c[GATEWAY], **grace))
            self._record()
        if FEED_STORE in missing:
            feeds = dict(self.request.feeds)
            for key in [k for k in c if k.startswith("Aggregator:")]:
                del c[key]
            deployed = await self._metered(
                FEED_STORE + (f" + {len(feeds)} feed{'s' * (len(feeds) != 1)}" if feeds else ""), "deployed",
                lambda: deploy_feeds(w3, account, c[VERIFIER], feeds))
            self.report.steps[-1] = DeployStep(**{**self.report.steps[-1].__dict__, "address": deployed[FEED_STORE]})
            c.update(deployed)
            self._record()
        self._record()  # also when nothing was deployed: the report carries the fields
        await self._verify([k for k in c if k in missing or (FEED_STORE in missing and k.startswith("Aggregator:"))])
        await self._flat_fee_board()
        if owner is not None:
            for key in (GATEWAY, FEED_STORE):
                await self._hand_over(key, owner)
        self.report.meta["owner"] = owner or account.address

    async def _verify(self, keys: list[str]) -> None:
        """What this run deployed holds the artifact's code (immutables masked), as a later run and
        `relay config check --online` will check it."""
        for key in keys:
            address = self.contracts[key]
            code = bytes(await self.w3.eth.get_code(self.w3.to_checksum_address(address)))
            if (problem := code_problem(key, address, code)) is not None:
                raise DeploymentError(f"chains.{self.name}.{problem} right after deploying it: the node returned "
                                      "other code than it was sent; check the endpoint")

    async def _flat_fee_board(self) -> None:
        """The task board forwards exactly the gateway's flat fee when it sends (its escrow pays
        workers): a Gateway that charges quotes must know it as a flat-fee sender."""
        gateway = evm_deploy.contract(self.w3, GATEWAY, self.contracts[GATEWAY])
        names = {entry.get("name") for entry in gateway.abi if entry.get("type") == "function"}
        if "setFlatFeeSender" not in names:
            return
        board = self.contracts[TASK_BOARD_V2]
        if await gateway.functions.flatFeeSender(board).call():
            return
        current = await gateway.functions.owner().call()
        if current.lower() != self.account.address.lower():
            self.report.notes.append(f"TaskBoardV2 {board} is not a flat-fee sender of Gateway {gateway.address}: its "
                                     f"owner {current} must call setFlatFeeSender({board}, true)")
            return
        await self._metered("TaskBoardV2 as flat-fee sender", "configured", lambda: evm_deploy.transact(
            self.w3, self.account, gateway.functions.setFlatFeeSender(board, True)), address=board)

    def _accept_hint(self, key: str) -> str:
        flag = "gateway" if key == GATEWAY else "feed-store"
        return f"`relay admin accept-ownership --chain {self.name} --contract {flag}` with its key"

    async def _hand_over(self, key: str, owner: str) -> None:
        """Ownership of `key` to `owner`: two steps where the contract has them (transferOwnership
        proposes, the new owner calls acceptOwnership), else the contract's one-step transfer."""
        address = self.contracts[key]
        contract = evm_deploy.contract(self.w3, artifact_name(key), address)
        names = {entry.get("name") for entry in contract.abi if entry.get("type") == "function"}
        two_step = {"acceptOwnership", "pendingOwner"} <= names
        current = await contract.functions.owner().call()
        if current.lower() == owner.lower():
            self.report.steps.append(DeployStep(f"{key} ownership", "kept", owner, note="already owned by --owner"))
            return
        if two_step and (await contract.functions.pendingOwner().call()).lower() == owner.lower():
            self.report.steps.append(DeployStep(f"{key} ownership", "kept", owner, note="proposed, awaiting acceptOwnership"))
            self.report.notes.append(f"{owner} must call acceptOwnership() on {key} {address}: {self._accept_hint(key)}")
            return
        if current.lower() != self.account.address.lower():
            raise DeploymentError(f"chains.{self.name}.contracts.{key} ({address}) is owned by {current}, neither the "
                                  f"deployer {self.account.address} nor --owner {owner}: only its owner can hand it "
                                  "over; run with that owner's key, or leave --owner out")
        await self._metered(f"{key} ownership", "proposed" if two_step else "transferred",
                            lambda: evm_deploy.transact(self.w3, self.account, contract.functions.transferOwnership(owner)),
                            address=owner,
                            note="awaiting acceptOwnership" if two_step else "one-step transfer (the contract has no "
                            "acceptOwnership)")
        if two_step:
            self.report.notes.append(f"{owner} must call acceptOwnership() on {key} {address} to take it over: "
                                     f"{self._accept_hint(key)}")
        if "beneficiary" in names and "setBeneficiary" in names:
            beneficiary = await contract.functions.beneficiary().call()
            if beneficiary.lower() != owner.lower():
                self.report.notes.append(f"the fees of {key} {address} still accrue to {beneficiary} (the deployer): "
                                         "its owner changes that with setBeneficiary(address)")



# --- after `relay deploy --owner`: the proposed owner accepts (`relay admin accept-ownership`) ------

# `--contract` of `relay admin accept-ownership` -> the key under [chains.<evm>.contracts].
OWNED_CONTRACTS = {"gateway": GATEWAY, "feed-store": FEED_STORE}


async def ownership(name: str, chain: EvmChain) -> dict[str, tuple[str, str, str | None]]:
    """Each owned contract the chain records: (address, owner, pending owner or None), for `relay
    admin status`."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0], request_kwargs={"timeout": RPC_TIMEOUT_S}))
    try:
        await _check_endpoint(name, chain, w3)
        result = {}
        for key in OWNED_CONTRACTS.values():
            if (address := chain.contracts.get(key)) is not None:
                owner, pending = await _owners(name, w3, key, address)
                result[key] = (address, owner, pending)
        return result
    finally:
        await w3.provider.disconnect()


async def accept_ownership(name: str, chain: EvmChain, which: str, key_ref: Any) -> tuple[str, str | None]:
    """`acceptOwnership()` on the Gateway or the FeedStore (`which`: "gateway" / "feed-store"), signed
    by `key_ref`'s account, which must be the pending owner: checked before anything is sent, and the
    error names who is pending. Returns (contract address, transaction hash; None when the account
    already owns it and nothing is pending)."""
    key = OWNED_CONTRACTS.get(which)
    if key is None:
        raise DeploymentError(f"--contract {which!r}: give one of {', '.join(OWNED_CONTRACTS)}")
    address = chain.contracts.get(key)
    if address is None:
        raise DeploymentError(f"chains.{name}.contracts has no {key}: deploy it first (`relay deploy --chain {name} "
                              "--owner ADDRESS`)")
    account: LocalAccount = Account.from_key(evm_key(key_ref, "--key"))
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0], request_kwargs={"timeout": RPC_TIMEOUT_S}))
    try:
        await _check_endpoint(name, chain, w3)
        owner, pending = await _owners(name, w3, key, address)
        where = f"{key} {address} on chain {name}"
        if pending is None:
            if owner.lower() == account.address.lower():
                return address, None
            raise DeploymentError(f"{where} has no ownership transfer pending (its owner is {owner}): the owner proposes "
                                  "one first (`relay deploy --owner ADDRESS`, or transferOwnership(ADDRESS))")
        if pending.lower() != account.address.lower():
            raise DeploymentError(f"{where} awaits acceptOwnership() from {pending} (proposed by its owner {owner}), "
                                  f"but the key given is {account.address}'s: run with {pending}'s key "
                                  "(--keystore FILE --password-file FILE, or --key FILE)")
        receipt = await evm_deploy.transact(w3, account, evm_deploy.contract(w3, key, address).functions.acceptOwnership())
        return address, "0x" + bytes(receipt["transactionHash"]).hex()
    finally:
        await w3.provider.disconnect()


async def _owners(name: str, w3: AsyncWeb3, key: str, address: str) -> tuple[str, str | None]:
    await asyncio.to_thread(evm_deploy.ensure_built)
    contract = evm_deploy.contract(w3, key, AsyncWeb3.to_checksum_address(address))
    if not await w3.eth.get_code(contract.address):
        raise DeploymentError(f"chains.{name}.contracts.{key} ({address}): no contract at this address: deploy it "
                              "(`relay deploy`) or fix the address")
    try:
        owner = await contract.functions.owner().call()
        pending = await contract.functions.pendingOwner().call()
    except Exception:  # noqa: BLE001 - other code, or a contract built before two-step ownership
        raise DeploymentError(f"chains.{name}.contracts.{key} ({address}) answers no owner() and pendingOwner(): "
                              f"not a {key} with two-step ownership (a wrong address, or one deployed before it: that "
                              "one transfers in one step, transferOwnership)") from None
    return owner, None if int(pending, 16) == 0 else pending
