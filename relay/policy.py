"""The relayer's payment policy (`[relayer.policy]`): which messages it pays gas to deliver.

Gateways charge senders a fee that accrues to the relayer operator (docs/PROTOCOL.md "Fees"), but a
relayer delivers whatever the committee signed unless it checks: without a policy, free or underpaid
sends cost it a delivery each (~183k gas on an EVM destination). Before a message is prepared the
relayer asks `PaymentPolicy.refusal`; a refused message goes to the dead letter with the reason
`refused_unpaid` (RetryReason.REFUSED_UNPAID), visible in `relay status` and the explorer, counted
in `tessera_relayer_refused_unpaid_total`, and deliverable later with `relay retry` (e.g. once the
policy changed).

Modes (Hyperlane's gas-payment enforcement policies are the model):
- "none": deliver everything (the default; the localnet's).
- "minimum": the fee the send paid (read from the source transaction's fee event) must be at least
  `minimum[<source chain>]`, in that chain's smallest unit; a chain not listed has no minimum.
- "onchain_quote": the fee paid must be at least the source gateway's quote now for the same
  destination, length and sender, less `quote_tolerance_bps` (prices move between send and check).
  A gateway that cannot quote (a stale price feed) makes the check fail, and the message is retried
  later, not refused.
`deny` senders are refused and `allow` senders delivered whatever the mode. Messages of the committee
(source domain 0: attestations, verdicts, rotations) are always delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from relay.config import EvmChain, RelayerPolicy, SolanaChain
from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.interfaces import ChainAdapter
from relay.protocol import COMMITTEE_DOMAIN

BPS = 10_000

__all__ = ["PaymentPolicy"]


@dataclass(frozen=True)
class PaymentPolicy:
    mode: Literal["none", "minimum", "onchain_quote"] = "none"
    minimum: Mapping[int, int] = field(default_factory=dict)  # source domain -> smallest units
    quote_tolerance_bps: int = 1000
    allow: Mapping[int, frozenset[bytes]] = field(default_factory=dict)  # source domain -> 32-byte senders
    deny: Mapping[int, frozenset[bytes]] = field(default_factory=dict)
    chain_names: Mapping[int, str] = field(default_factory=dict)  # for messages people read

    @classmethod
    def from_config(cls, policy: RelayerPolicy, chains: Mapping[str, EvmChain | SolanaChain]) -> "PaymentPolicy":
        """The policy with chain names resolved to domains and senders to their 32-byte form; a name
        or an address that does not resolve is a ConfigError naming the field (`relay config check`
        reports the same problems)."""
        problems = policy_problems(policy, chains)
        if problems:
            raise ConfigError("relayer.policy: " + "; ".join(problems))

        def senders(lists: Mapping[str, list[str]]) -> dict[int, frozenset[bytes]]:
            return {chains[name].domain: frozenset(chains[name].parse_address(a) for a in addresses)
                    for name, addresses in lists.items()}

        return cls(mode=policy.mode, minimum={chains[name].domain: amount for name, amount in policy.minimum.items()},
                   quote_tolerance_bps=policy.quote_tolerance_bps, allow=senders(policy.allow), deny=senders(policy.deny),
                   chain_names={chain.domain: name for name, chain in chains.items()})

    @property
    def active(self) -> bool:
        return self.mode != "none" or any(self.deny.values())

    def _name(self, domain: int) -> str:
        return self.chain_names.get(domain, f"domain {domain}")

    async def refusal(self, envelope: Envelope, source_tx: str, source: ChainAdapter | None) -> str | None:
        """None to deliver the message; otherwise why it is refused (for `relay status`). Raises when
        the fee or the quote cannot be read (the caller retries later: not knowing is not unpaid)."""
        src = envelope.src_domain
        if not self.active or src == COMMITTEE_DOMAIN:
            return None
        sender = envelope.src_sender
        who = f"sender 0x{sender.hex()} on {self._name(src)}"
        if sender in self.deny.get(src, frozenset()):
            return f"refused by relayer.policy.deny: {who}"
        if sender in self.allow.get(src, frozenset()) or self.mode == "none":
            return None
        if source is None:
            return f"unpaid: no adapter for source {self._name(src)} to read the fee from (add the chain to the config)"
        paid = await source.fee_paid(source_tx, envelope.message_id)
        paid_text = f"paid {paid}" if paid is not None else f"no fee recorded in {source_tx}"
        paid = paid or 0
        match self.mode:
            case "minimum":
                need = self.minimum.get(src, 0)
                if paid < need:
                    return (f"unpaid: {paid_text}, below relayer.policy.minimum.{self._name(src)} = {need} "
                            f"(the sender pays more, or an operator allows it and runs `relay retry`)")
            case "onchain_quote":
                quote = await source.quote(envelope.dst_domain, len(envelope.payload), sender)
                need = quote * (BPS - self.quote_tolerance_bps) // BPS
                if paid < need:
                    return (f"unpaid: {paid_text}, below the {self._name(src)} gateway's quote {quote} less "
                            f"relayer.policy.quote_tolerance_bps = {self.quote_tolerance_bps}")
        return None


def policy_problems(policy: RelayerPolicy, chains: Mapping[str, EvmChain | SolanaChain]) -> list[str]:
    """Every problem of a [relayer.policy] against the config's chains, each naming its field."""
    problems: list[str] = []
    known = ", ".join(sorted(chains)) or "none"
    for name in policy.minimum:
        if name not in chains:
            problems.append(f"relayer.policy.minimum.{name}: no chain {name!r} under [chains] (known: {known})")
    for list_name, lists in (("allow", policy.allow), ("deny", policy.deny)):
        for name, addresses in lists.items():
            chain = chains.get(name)
            if chain is None:
                problems.append(f"relayer.policy.{list_name}.{name}: no chain {name!r} under [chains] (known: {known})")
                continue
            for address in addresses:
                try:
                    chain.parse_address(address)
                except ValueError as exc:
                    problems.append(f"relayer.policy.{list_name}.{name}: {exc} (chain {name!r} is {chain.kind})")
    if policy.mode == "minimum" and not policy.minimum:
        problems.append("relayer.policy.minimum: mode is \"minimum\" but no chain has a minimum: add "
                        "`minimum = { <chain> = <amount> }` (smallest units) or choose another mode")
    return problems
