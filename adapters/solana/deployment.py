"""`relay deploy` on a Solana chain: the Tessera program through the upgradeable BPF loader, its
committee and gateway initialised, the upgrade authority handed over, on any RPC endpoint, from a
deployer keypair, idempotently.

The steps are the localnet's (adapters/solana/deploy.py `deploy_program`, `initialize_committee`,
`initialize_gateway`): a buffer written in chunks then DeployWithMaxDataLen, InitCommittee (bound to
the chain's domain, holding the config's committee), InitGateway, then ProposeAdmin to --owner (the
program's admin: pause, fees; it takes over with `relay admin accept-ownership --chain X --contract
gateway`, signed with its key) and the upgrade authority to --upgrade-authority: SetAuthorityChecked
when it is a keypair file (the new authority co-signs, so a wrong key cannot be named), else
SetAuthority to an on-curve public key (an address nobody can sign for is refused; a typo that lands
on the curve is not caught: the report warns). Both Init instructions require the program's upgrade
authority to sign, so the deployer stays the authority until they ran.

Before sending anything it checks the endpoint (reachable; a known network's genesis hash), what is
recorded (the program's account, its ProgramData holding this checkout's tessera.so, the committee
account's domain and committee) and the deployer's balance against the rent and fees it will pay.
The program and buffer keypairs are written under `keys_dir` before the deployment starts, so a run
killed midway finds the program at the same id next time, and one killed during the buffer writes
leaves a buffer the next run completes (only the chunks it lacks are written).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.checks import committee_problems
from adapters.solana import deploy as solana_deploy
from adapters.solana.program import (BPF_LOADER_UPGRADEABLE_ID, CONFIG_LEN_WITH_PENDING, OUTBOX_LEN, CommitteeConfig,
                                     SolanaProgramError, accept_admin_ix, committee_address, outbox_address,
                                     programdata_address, propose_admin_ix)
from adapters.solana.rpc import SolanaAdapterError, keypair_from_ref, load_keypair
from attest.files import write_atomic
from relay.config import SolanaChain
from relay.deployment import DeploymentError, DeployReport, DeployRequest, DeployStep
from relay.networks import network_named

RPC_TIMEOUT_S = 15.0
_SIGNATURE_FEE = 5_000  # lamports per signature, for the balance check only


def load_or_create_keypair(path: Path) -> Keypair:
    """A keypair file in the Solana CLI's format (a JSON array of the 64 secret-key bytes), created
    with mode 0600 when missing (the localnet's keys use it too)."""
    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text())))
    keypair = Keypair()
    write_atomic(path, json.dumps(list(bytes(keypair))))
    return keypair


def _pubkey(text: str, flag: str) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except ValueError:
        raise DeploymentError(f"{flag} {text!r} is not a base58 Solana public key") from None


def _owner(text: str, name: str) -> Pubkey:
    """--owner on a Solana chain: the program's next admin, a base58 public key that can sign."""
    if text.startswith("0x"):
        raise DeploymentError(f"chains.{name} is a Solana chain: --owner {text} is an EVM address; give the base58 "
                              "public key of the Solana account that becomes the program's admin (pause, fees)")
    owner = _pubkey(text, "--owner")
    if not owner.is_on_curve():
        raise DeploymentError(f"--owner {owner} is not on the ed25519 curve: no key can sign for it (a PDA?), so it "
                              "could never accept the program's admin")
    return owner


def _upgrade_authority(text: str) -> tuple[Pubkey, Keypair | None]:
    """--upgrade-authority: a keypair file (SetAuthorityChecked, it co-signs) or an on-curve public key."""
    try:
        authority = Pubkey.from_string(text)
    except ValueError:
        path = Path(text)
        if not path.is_file():
            raise DeploymentError(f"--upgrade-authority {text!r} is neither a base58 Solana public key nor a keypair "
                                  "file") from None
        try:
            keypair = load_keypair(path.read_text(), f"--upgrade-authority {path}")
        except SolanaAdapterError as exc:
            raise DeploymentError(str(exc)) from None
        return keypair.pubkey(), keypair
    if not authority.is_on_curve():
        raise DeploymentError(f"--upgrade-authority {authority} is not on the ed25519 curve: no key can sign for it "
                              "(a PDA, or a typo), and upgrades would be lost for good. relay deploy refuses it; a "
                              "multisig vault takes the authority with `solana program set-upgrade-authority "
                              "--skip-new-upgrade-authority-signer-check` after you checked the address")
    return authority, None


async def deploy_tessera(name: str, chain: SolanaChain, request: DeployRequest) -> DeployReport:
    """Deploys what is missing of Tessera on `chain` (see the module docstring); returns what it
    found, deployed and spent (lamports, rent included)."""
    owner = _owner(request.owner, name) if request.owner is not None else None
    authority, authority_key = (_upgrade_authority(request.upgrade_authority) if request.upgrade_authority
                                else (None, None))
    payer = keypair_from_ref(request.deployer, "--key")
    report = DeployReport(chain=name, unit="lamports", token="lamports",
                          meta={"kind": "solana", "deployer": str(payer.pubkey())})
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed, timeout=RPC_TIMEOUT_S) as client:
        await _check_endpoint(name, chain, client)
        await _Run(name, chain, client, payer, request, report).deploy_all(owner, authority, authority_key)
    return report


async def _check_endpoint(name: str, chain: SolanaChain, client: AsyncClient) -> None:
    url = chain.rpc_urls[0]
    try:
        genesis = str((await asyncio.wait_for(client.get_genesis_hash(), RPC_TIMEOUT_S)).value)
    except Exception as exc:  # transport, HTTP status, timeout: the endpoint is the problem
        raise DeploymentError(f"chains.{name}.rpc_urls[0] ({url}) does not answer: {exc or type(exc).__name__}; "
                              "check the URL and that the node is up") from None
    if chain.network is not None:
        expected = network_named(chain.network).genesis
        if genesis != expected:
            raise DeploymentError(f"chains.{name}.rpc_urls[0] ({url}) serves the cluster with genesis hash {genesis}, "
                                  f"not {chain.network}'s {expected}: point rpc_urls at {chain.network}")


class _Run:
    def __init__(self, name: str, chain: SolanaChain, client: AsyncClient, payer: Keypair, request: DeployRequest,
                 report: DeployReport) -> None:
        self.name, self.chain, self.client, self.payer = name, chain, client, payer
        self.request, self.report = request, report
        self.program_bytes = solana_deploy.load_program_bytes()
        self.fields: dict[str, Any] = {"program_id": request.recorded.get("program_id"),
                                       "accounts": dict(request.recorded.get("accounts") or {})}

    async def _balance(self) -> int:
        return (await self.client.get_balance(self.payer.pubkey())).value

    async def _metered(self, what: str, action: str, send: Callable[[], Awaitable[Any]], address: str = "",
                       note: str = "") -> Any:
        before = await self._balance()
        result = await send()
        spent = before - await self._balance()
        self.report.steps.append(DeployStep(what, action, address or str(result), spent, spent, note))
        return result

    def _record(self) -> None:
        self.report.fields = {k: v for k, v in self.fields.items() if v}
        self.request.record(self.report.fields)

    async def _rent(self, size: int) -> int:
        return (await self.client.get_minimum_balance_for_rent_exemption(size)).value

    # --- the program --------------------------------------------------------------------------

    async def _program_state(self, program_id: Pubkey, where: str) -> bytes | None:
        """The ProgramData of a deployed program at `program_id` (None: no account there);
        DeploymentError when the account is something else or runs other code."""
        account = (await self.client.get_account_info(program_id)).value
        if account is None:
            return None
        if not account.executable or account.owner != BPF_LOADER_UPGRADEABLE_ID:
            raise DeploymentError(f"{where}: the account there is not a program deployed through the upgradeable "
                                  f"loader (executable {account.executable}, owner {account.owner}): fix the address, "
                                  "or remove it from the deployment file to deploy a new program")
        data = (await self.client.get_account_info(programdata_address(program_id))).value
        if data is None:
            raise DeploymentError(f"{where}: the program has no ProgramData account: it was closed; remove the "
                                  "address from the deployment file to deploy a new program")
        code = bytes(data.data)[solana_deploy.PROGRAMDATA_METADATA_LEN:]
        so = self.program_bytes
        if code[:len(so)] != so or any(code[len(so):]):
            raise DeploymentError(f"{where}: the program there runs other code than contracts/solana/tessera.so "
                                  f"({len(so):,} bytes) as this checkout builds it: a wrong address, or an older "
                                  "version (relay deploy does not upgrade programs; remove the address from the "
                                  "deployment file to deploy a new one)")
        return bytes(data.data)

    async def _ensure_program(self) -> Pubkey:
        recorded = self.fields["program_id"]
        if recorded:
            program_id = _pubkey(recorded, f"chains.{self.name}.program_id")
            if await self._program_state(program_id, f"chains.{self.name}.program_id ({program_id})") is not None:
                self.report.steps.append(DeployStep("program", "found", str(program_id)))
                return program_id
            self.report.notes.append(f"program_id {program_id} had no account on chain {self.name}: deployed a new one")
            self.fields["accounts"] = {}
        # Written before the deployment starts: a killed run finds its program at this id next time.
        keypair_file = self.request.keys_dir / f"{self.name}-program.json"
        program = load_or_create_keypair(keypair_file)
        where = f"the program keypair {keypair_file} ({program.pubkey()})"
        if await self._program_state(program.pubkey(), where) is not None:
            self.report.steps.append(DeployStep("program", "found", str(program.pubkey()),
                                                note="deployed by an interrupted run"))
        else:
            await self._check_funds(deploying=True)
            # Kept too: a run killed during the buffer writes leaves a buffer the next run completes.
            buffer = load_or_create_keypair(self.request.keys_dir / f"{self.name}-buffer.json")
            await self._metered("program (upgradeable loader)", "deployed", lambda: solana_deploy.deploy_program(
                self.client, self.payer, self.program_bytes, program, buffer))
            # The ProgramData holds exactly tessera.so, as a later run will check it.
            if await self._program_state(program.pubkey(), f"the program just deployed at {program.pubkey()}") is None:
                raise DeploymentError(f"the program deployed at {program.pubkey()} on chain {self.name} has no account "
                                      "after its deployment was confirmed: check the endpoint")
        self.fields["program_id"] = str(program.pubkey())
        self._record()
        return program.pubkey()

    async def _check_funds(self, deploying: bool) -> None:
        size = len(self.program_bytes)
        needed = await self._rent(CONFIG_LEN_WITH_PENDING) + await self._rent(OUTBOX_LEN) + 5 * _SIGNATURE_FEE
        if deploying:
            chunks = -(-size // 900) + 2
            needed += (await self._rent(solana_deploy._BUFFER_METADATA_LEN + size)
                       + await self._rent(solana_deploy.PROGRAMDATA_METADATA_LEN + 2 * size)
                       + await self._rent(solana_deploy._PROGRAM_ACCOUNT_LEN) + 2 * chunks * _SIGNATURE_FEE)
        balance = await self._balance()
        if balance < needed:
            raise DeploymentError(
                f"the deployer {self.payer.pubkey()} holds {balance / 1e9:.6f} SOL on chain {self.name}, but "
                f"{'deploying the program and initializing it' if deploying else 'initializing the program'} takes "
                f"about {needed / 1e9:.6f} SOL (rent included): fund it (`solana airdrop` on devnet) and run again")

    async def _authority(self, program_id: Pubkey) -> Pubkey | None:
        data = (await self.client.get_account_info(programdata_address(program_id))).value
        return solana_deploy.programdata_authority(bytes(data.data)) if data is not None else None

    # --- committee, gateway, authority --------------------------------------------------------

    async def _require_authority(self, program_id: Pubkey, what: str) -> None:
        current = await self._authority(program_id)
        if current != self.payer.pubkey():
            raise DeploymentError(f"{what} on chain {self.name} must be signed by the program's upgrade authority "
                                  f"{current}, not the deployer {self.payer.pubkey()}: run `relay deploy` with that "
                                  "authority's key")

    async def deploy_all(self, owner: Pubkey | None, authority: Pubkey | None, authority_key: Keypair | None) -> None:
        program_id = await self._ensure_program()
        committee = self.request.committee
        config_address = committee_address(program_id)[0]
        account = (await self.client.get_account_info(config_address)).value
        if account is not None and account.owner == program_id:
            where = f"chains.{self.name} committee account ({config_address})"
            try:
                state = CommitteeConfig.decode(bytes(account.data))
            except SolanaProgramError as exc:
                raise DeploymentError(f"{where}: {exc}") from None
            if state.domain != self.chain.domain:
                raise DeploymentError(f"{where}: initialized for domain {state.domain}, but chains.{self.name}.domain "
                                      f"is {self.chain.domain}: a program serves one domain; remove program_id from "
                                      "the deployment file to deploy a new program for this one")
            problems = committee_problems(where, state.current_epoch, state.current_key, committee)
            if problems:
                raise DeploymentError(problems[0])
            self.report.steps.append(DeployStep("committee (InitCommittee)", "found", str(config_address)))
        else:
            await self._require_authority(program_id, "InitCommittee")
            await self._check_funds(deploying=False)
            await self._metered("committee (InitCommittee)", "initialized", lambda: solana_deploy.initialize_committee(
                self.client, self.payer, program_id, domain=self.chain.domain, epoch=committee.epoch, n=committee.n,
                t=committee.t, group_key=committee.group_key))
        self.fields["accounts"]["committee"] = str(config_address)
        self._record()
        outbox = outbox_address(program_id)[0]
        account = (await self.client.get_account_info(outbox)).value
        if account is not None and account.owner == program_id:
            self.report.steps.append(DeployStep("gateway (InitGateway)", "found", str(outbox)))
        else:
            await self._require_authority(program_id, "InitGateway")
            await self._metered("gateway (InitGateway)", "initialized",
                                lambda: solana_deploy.initialize_gateway(self.client, self.payer, program_id))
        self.fields["accounts"]["outbox"] = str(outbox)
        self._record()
        await self._propose_admin(program_id, owner)
        await self._hand_over(program_id, authority, authority_key)

    async def _propose_admin(self, program_id: Pubkey, owner: Pubkey | None) -> None:
        """The program's admin (the committee config's: pause, fees) to `owner`, two steps: ProposeAdmin
        here, AcceptAdmin signed by `owner` (`relay admin accept-ownership --contract gateway`)."""
        config = committee_address(program_id)[0]
        state = CommitteeConfig.decode(bytes((await self.client.get_account_info(config)).value.data))
        self.report.meta["admin"] = str(state.admin)
        if owner is None:
            return
        self.report.meta["owner"] = str(owner)
        hint = f"`relay admin accept-ownership --chain {self.name} --contract gateway` with its key"
        if state.admin == owner:
            self.report.steps.append(DeployStep("admin", "kept", str(owner), note="already --owner"))
            return
        if state.pending_admin == owner:
            self.report.steps.append(DeployStep("admin (ProposeAdmin)", "kept", str(owner),
                                                note="proposed, awaiting AcceptAdmin"))
            self.report.notes.append(f"{owner} must accept the program's admin: {hint}")
            return
        if state.admin != self.payer.pubkey():
            raise DeploymentError(f"the admin of program {program_id} on chain {self.name} is {state.admin}, neither "
                                  f"the deployer {self.payer.pubkey()} nor --owner {owner}: only it can propose "
                                  "another; run with that admin's key, or leave --owner out")
        await self._metered("admin (ProposeAdmin)", "proposed", lambda: solana_deploy.send_instructions(
            self.client, self.payer, [propose_admin_ix(program_id, self.payer.pubkey(), owner)]),
            address=str(owner), note="awaiting AcceptAdmin")
        self.report.notes.append(f"{owner} must accept the program's admin (pause, fees) to take it over: {hint}; "
                                 f"until then the deployer {self.payer.pubkey()} stays the admin")

    async def _hand_over(self, program_id: Pubkey, authority: Pubkey | None, authority_key: Keypair | None) -> None:
        current = await self._authority(program_id)
        target = authority or self.payer.pubkey()
        self.report.meta["upgrade_authority"] = str(current)
        if current == target:
            self.report.steps.append(DeployStep("upgrade authority", "kept", str(current)))
            return
        if authority is None:  # no --upgrade-authority: whoever holds it keeps it
            self.report.steps.append(DeployStep("upgrade authority", "kept", str(current)))
            return
        if current != self.payer.pubkey():
            raise DeploymentError(f"the upgrade authority of program {program_id} on chain {self.name} is {current}, "
                                  f"neither the deployer {self.payer.pubkey()} nor --upgrade-authority {authority}: "
                                  "only it can hand the program over")
        programdata = programdata_address(program_id)
        if authority_key is not None:  # the new authority co-signs: the loader checks it is the key meant
            await self._metered("upgrade authority (SetAuthorityChecked)", "transferred",
                                lambda: solana_deploy.send_instructions(self.client, self.payer, [
                                    solana_deploy.set_authority_checked_ix(programdata, self.payer.pubkey(), authority)],
                                    signers=[authority_key]),
                                address=str(authority))
        else:
            await self._metered("upgrade authority (SetAuthority)", "transferred", lambda: solana_deploy.send_instructions(
                self.client, self.payer, [solana_deploy.set_authority_ix(programdata, self.payer.pubkey(), authority)]),
                address=str(authority))
            self.report.notes.append(f"the upgrade authority went to {authority} unchecked (SetAuthority): nobody "
                                     "signed for it; give --upgrade-authority its keypair file to have the loader "
                                     "check it (SetAuthorityChecked)")
        self.report.meta["upgrade_authority"] = str(authority)


# --- after `relay deploy --owner`: the proposed admin accepts (`relay admin accept-ownership`) ------


def _program_id(name: str, chain: SolanaChain) -> Pubkey:
    if not chain.program_id:
        raise DeploymentError(f"chains.{name} has no program_id: deploy the program first (`relay deploy --chain "
                              f"{name} --owner PUBKEY`)")
    return _pubkey(chain.program_id, f"chains.{name}.program_id")


async def _committee_state(name: str, program_id: Pubkey, client: AsyncClient) -> CommitteeConfig:
    config = committee_address(program_id)[0]
    account = (await client.get_account_info(config)).value
    if account is None or account.owner != program_id:
        raise DeploymentError(f"chains.{name}: program {program_id} has no committee account at {config}: run "
                              f"`relay deploy --chain {name}`")
    try:
        return CommitteeConfig.decode(bytes(account.data))
    except SolanaProgramError as exc:
        raise DeploymentError(f"chains.{name} committee account ({config}): {exc}") from None


async def program_admin(name: str, chain: SolanaChain) -> dict[str, tuple[str, str, str | None]]:
    """`relay admin status`: the program's admin and pending admin (None: nothing pending), keyed
    "program admin", and its upgrade authority ("upgrade authority", never pending; "none" once the
    program is immutable)."""
    program_id = _program_id(name, chain)
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed, timeout=RPC_TIMEOUT_S) as client:
        await _check_endpoint(name, chain, client)
        state = await _committee_state(name, program_id, client)
        data = (await client.get_account_info(programdata_address(program_id))).value
        authority = solana_deploy.programdata_authority(bytes(data.data)) if data is not None else None
    pending = str(state.pending_admin) if state.pending_admin is not None else None
    return {"program admin": (str(program_id), str(state.admin), pending),
            "upgrade authority": (str(program_id), str(authority) if authority else "none (immutable)", None)}


async def accept_admin(name: str, chain: SolanaChain, key_ref: Any) -> tuple[str, str | None]:
    """AcceptAdmin signed by `key_ref`'s keypair, which must be the proposed admin: checked before
    anything is sent, and the error names who is pending. Returns (program id, signature; None when
    the key is the admin already and nothing is pending)."""
    program_id = _program_id(name, chain)
    keypair = keypair_from_ref(key_ref, "--key")
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed, timeout=RPC_TIMEOUT_S) as client:
        await _check_endpoint(name, chain, client)
        state = await _committee_state(name, program_id, client)
        where = f"the admin of program {program_id} on chain {name}"
        if state.pending_admin is None:
            if state.admin == keypair.pubkey():
                return str(program_id), None
            raise DeploymentError(f"{where} has no handover pending (the admin is {state.admin}): the admin proposes "
                                  f"one first (`relay deploy --chain {name} --owner PUBKEY`)")
        if state.pending_admin != keypair.pubkey():
            raise DeploymentError(f"{where} awaits AcceptAdmin from {state.pending_admin} (proposed by the admin "
                                  f"{state.admin}), but the key given is {keypair.pubkey()}: run with "
                                  f"{state.pending_admin}'s key (--keystore FILE --password-file FILE, or --key FILE)")
        signature = await solana_deploy.send_instructions(client, keypair, [accept_admin_ix(program_id, keypair.pubkey())])
        return str(program_id), str(signature)
