"""Talking to EVM nodes: web3 clients, the endpoint pool over a chain's `rpc_urls`, which errors are
the endpoint's fault (worth another endpoint) and which are the request's, and revert decoding.

Every RPC of the EVM package goes through a `PoolCall` — `call(what, fn)` where `fn` takes one
client — usually an `EndpointPool`'s `call`; `direct(w3)` wraps one client a caller owns.

Clients made here (`make_client`) are lean, because every message costs several RPCs:
- `LeanHTTPProvider` keeps its HTTP connections alive in one aiohttp session per event loop (web3's
  own provider closes the connection after every request and takes a thread-pool lock per request);
- web3's ValidationMiddleware (an `eth_chainId` request before every eth_call / eth_estimateGas, to
  check a `chainId` a call declares) is replaced by `ChainIdCheck`, the same check against the
  endpoint's chain id read once; with `chain_id=` given, every endpoint is also checked against the
  configured chain id before its first request is sent (WrongChainError, the endpoint's fault: the
  pool fails over to the others);
- the hot reads (`receipt`, `eth_call`, `eth_calls`) skip web3's middleware and result formatters:
  one JSON-RPC request, errors raised as web3 raises them, a receipt parsed by `parse_receipt`.
Clients not made here (a caller's own AsyncWeb3, test fakes) take web3's ordinary path for those reads.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import aiohttp
from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3._utils.error_formatters_utils import raise_block_not_found_on_error, raise_contract_logic_error_on_revert
from web3._utils.validation import validate_rpc_response_and_raise_if_error
from web3.exceptions import (BlockNotFound, ContractLogicError, ExtraDataLengthError, ProviderConnectionError,
                             TooManyRequests, TransactionNotFound, Web3RPCError, Web3ValidationError)
from web3.middleware import Web3Middleware

from adapters.endpoints import EndpointPool
from relay.errors import TesseraError

T = TypeVar("T")

PoolCall = Callable[[str, Callable[[AsyncWeb3], Awaitable[Any]]], Awaitable[Any]]


class WrongChainError(TesseraError):
    """An endpoint serves another chain than the configured one: its fault, so the pool skips it."""


def is_retryable(exc: BaseException) -> bool:
    """Endpoint trouble (worth another endpoint or a later try), as opposed to a request the chain
    refuses (a revert, a bad transaction), which no retry fixes."""
    if isinstance(exc, WrongChainError):
        return True
    if isinstance(exc, ContractLogicError):
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status == 429 or exc.status >= 500
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ProviderConnectionError,
                        TooManyRequests, TimeoutError)):
        return True
    return isinstance(exc, OSError)


CONNECTIONS = 32  # kept-alive HTTP connections per endpoint; requests beyond them wait for a free one
KEEPALIVE_S = 15.0  # an idle connection is closed after this (below the idle timeouts nodes use)
_HEADERS = {"Content-Type": "application/json"}


class LeanHTTPProvider(AsyncHTTPProvider):
    """web3's AsyncHTTPProvider over one kept-alive aiohttp session per event loop (see the module
    docstring). With `chain_id`, the endpoint's chain id is checked before its first request."""

    def __init__(self, url: str, timeout: float, *, chain_id: int | None = None, name: str = "evm",
                 connections: int = CONNECTIONS) -> None:
        super().__init__(url, exception_retry_configuration=None,
                         request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)})
        self.expected_chain_id = chain_id
        self.chain_name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._node_chain_id: int | None = None
        self._chain_id_read: asyncio.Future[int] | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed or session._loop is not asyncio.get_running_loop():
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=KEEPALIVE_S),
                raise_for_status=True)
            self._session = session
        return session

    async def _post(self, body: bytes) -> Any:
        async with self._client_session().post(self.endpoint_uri, data=body, headers=_HEADERS,
                                               timeout=self._timeout) as response:
            return json.loads(await response.read())

    async def _checked(self) -> None:
        """Before the first request: the node's chain id, read once, is the configured one."""
        if self._node_chain_id is not None or self.expected_chain_id is None:
            return
        await self.node_chain_id()

    async def node_chain_id(self) -> int:
        """The endpoint's chain id, read once (a failed read is not kept); WrongChainError when it
        is not the configured one."""
        if self._node_chain_id is None:
            read = self._chain_id_read
            if read is None or read.get_loop() is not asyncio.get_running_loop() or (
                    read.done() and (read.cancelled() or read.exception() is not None)):
                read = self._chain_id_read = asyncio.ensure_future(self._read_chain_id())
            self._node_chain_id = await asyncio.shield(read)
        return self._node_chain_id

    async def _read_chain_id(self) -> int:
        response = await self._post(self.encode_rpc_request("eth_chainId", []))
        validate_rpc_response_and_raise_if_error(response, None, params=[])
        chain_id = int(response["result"], 16)
        if self.expected_chain_id is not None and chain_id != self.expected_chain_id:
            raise WrongChainError(
                f"chain {self.chain_name}: endpoint {self.endpoint_uri} serves chain id {chain_id}, the config says "
                f"{self.expected_chain_id}; point rpc_urls at the right network")
        return chain_id

    async def make_request(self, method: Any, params: Any) -> Any:
        await self._checked()
        return await self._post(self.encode_rpc_request(method, params))

    async def make_batch_request(self, batch_requests: list[tuple[Any, Any]]) -> Any:
        await self._checked()
        response = await self._post(self.encode_batch_rpc_request(batch_requests))
        if isinstance(response, list):
            response.sort(key=lambda r: int(r.get("id") or 0))
        return response

    async def batch(self, requests: Sequence[tuple[str, Any]]) -> list[Any] | None:
        """One JSON-RPC batch: the responses in the order of `requests`, matched by id; None when the
        endpoint does not answer it as a batch of exactly these ids (batches refused, or cut)."""
        await self._checked()
        dicts = [self.form_request(method, params) for method, params in requests]
        response = await self._post(self.encode_batch_request_dicts(dicts))
        if not isinstance(response, list) or len(response) != len(dicts):
            return None
        by_id: dict[int, Any] = {}
        for item in response:
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(ident, str) and ident.isdigit():
                ident = int(ident)
            if not isinstance(ident, int) or ident in by_id:
                return None
            by_id[ident] = item
        if set(by_id) != {d["id"] for d in dicts}:
            return None
        return [by_id[d["id"]] for d in dicts]

    async def disconnect(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        await super().disconnect()


_CHAIN_ID_CHECKED = frozenset({"eth_sendTransaction", "eth_estimateGas", "eth_call", "eth_createAccessList"})
_BLOCK_READS = frozenset({"eth_getBlockByHash", "eth_getBlockByNumber"})


class ChainIdCheck(Web3Middleware):
    """web3's ValidationMiddleware (a transaction's declared `chainId` is the node's, then dropped;
    a block's extraData is at most 32 bytes) with the node's chain id read once per client, not
    before every eth_call / eth_estimateGas."""

    async def async_request_processor(self, method: Any, params: Any) -> Any:
        if method in _CHAIN_ID_CHECKED and params and isinstance(params[0], dict) and "chainId" in params[0]:
            tx = dict(params[0])
            declared = tx.pop("chainId")
            declared = int(declared, 16) if isinstance(declared, str) else declared
            node = await self._w3.provider.node_chain_id()
            if declared != node:
                raise Web3ValidationError(
                    f"The transaction declared chain ID {declared!r}, but the connected node is on {node!r}")
            params = (tx, *params[1:])
        return method, params

    async def async_response_processor(self, method: Any, response: Any) -> Any:
        if method in _BLOCK_READS and isinstance(response, dict):
            block = response.get("result")
            extra = block.get("extraData") if isinstance(block, dict) else None
            if isinstance(extra, (str, bytes)) and len(HexBytes(extra)) > 32:
                raise ExtraDataLengthError(
                    f"The field extraData is {len(HexBytes(extra))} bytes, but should be 32. It is quite likely "
                    "that you are connected to a POA chain.")
        return response


def make_client(url: str, timeout: float, *, chain_id: int | None = None, name: str = "evm") -> AsyncWeb3:
    """A lean HTTP client (module docstring) with web3's own retries off: the pool decides, and fails
    over instead of hammering one node. With `chain_id`, an endpoint on another chain is refused."""
    w3 = AsyncWeb3(LeanHTTPProvider(url, timeout, chain_id=chain_id, name=name))
    w3.middleware_onion.replace("validation", ChainIdCheck)
    return w3


def endpoint_pool(name: str, urls: Sequence[str], *, timeout: float, attempts: int = 4,
                  chain_id: int | None = None) -> EndpointPool[AsyncWeb3]:
    """The pool over a chain's endpoints, in configured order; with `chain_id`, each endpoint is
    checked to serve that chain before its first request."""
    return EndpointPool(name, list(urls), lambda url: make_client(url, timeout, chain_id=chain_id, name=name),
                        is_retryable, attempts=attempts, timeout=timeout)


def given_client_pool(name: str, w3: AsyncWeb3, *, timeout: float) -> EndpointPool[AsyncWeb3]:
    """A one-endpoint pool over a client the caller owns (and closes)."""
    return EndpointPool(name, ["(given provider)"], lambda _url: w3, is_retryable, timeout=timeout)


def direct(w3: AsyncWeb3) -> PoolCall:
    """A PoolCall straight to one client: no failover, no retries (deployment scripts, tests)."""
    async def call(_what: str, fn: Callable[[AsyncWeb3], Awaitable[T]]) -> T:
        return await fn(w3)

    return call


class Coalescer:
    """Concurrent calls with the same key share one call in flight: the many messages of a batch
    asking about the same transaction, or the same final block, cost one RPC. Nothing is kept once
    the call returns (no staleness); a failure reaches every caller that shared it."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is None or future.done() or future.get_loop() is not asyncio.get_running_loop():
            future = asyncio.ensure_future(fn())
            self._inflight[key] = future
            future.add_done_callback(lambda done, key=key: self._forget(key, done))
        return await asyncio.shield(future)

    def _forget(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: every caller that shared it has it already


# --- hot reads without web3's formatters ------------------------------------------------------


def lean(w3: Any) -> LeanHTTPProvider | None:
    provider = getattr(w3, "provider", None)
    return provider if isinstance(provider, LeanHTTPProvider) else None


def _result(response: Any, params: Any, error_formatters: Any = None) -> Any:
    """A JSON-RPC response's result; its error raised as web3 raises it."""
    if not isinstance(response, dict) or "error" in response or "result" not in response:
        if not isinstance(response, dict):
            raise ProviderConnectionError(f"not a JSON-RPC response: {str(response)[:200]}")
        validate_rpc_response_and_raise_if_error(response, error_formatters, params=params)
    return response["result"]


async def request(w3: AsyncWeb3, method: str, params: list[Any], error_formatters: Any = None) -> Any:
    """One JSON-RPC request straight to a lean client's provider: no middleware, no formatters."""
    provider = lean(w3)
    assert provider is not None, "request() needs a client made by make_client"
    return _result(await provider.make_request(method, params), params, error_formatters)


def block_param(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


async def eth_call(w3: AsyncWeb3, tx: dict[str, Any], block: int | str = "latest") -> bytes:
    """eth_call's return data; a revert raises ContractLogicError as web3's `eth.call` does."""
    if lean(w3) is None:
        return bytes(await w3.eth.call(tx, block_identifier=block))
    params = [_call_params(tx), block_param(block)]
    return bytes.fromhex((await request(w3, "eth_call", params, raise_contract_logic_error_on_revert))[2:])


def _call_params(tx: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in tx.items():
        if isinstance(value, int) and key in ("gas", "value", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas",
                                                 "nonce"):
            value = hex(value)
        elif isinstance(value, (bytes, bytearray)):
            value = "0x" + bytes(value).hex()
        out[key] = value
    return out


async def eth_calls(w3: AsyncWeb3, calls: Sequence[tuple[dict[str, Any], int | str]]) -> list[bytes | BaseException]:
    """Several eth_calls in one JSON-RPC batch: each one's return data, or the error it raised (a
    revert as ContractLogicError). The whole batch fails (raises) only on endpoint trouble. An
    endpoint that refuses batches is asked one call at a time."""
    provider = lean(w3)
    if provider is None or len(calls) == 1:
        return await eth_calls_one_by_one(w3, calls)
    params = [[_call_params(tx), block_param(block)] for tx, block in calls]
    responses = await provider.batch([("eth_call", p) for p in params])
    if responses is None:
        # Batches refused, cut or with answers that cannot be matched to their calls by id: one at a
        # time instead, through the same client (an answer never goes to another call's caller).
        return await eth_calls_one_by_one(w3, calls)
    results: list[bytes | BaseException] = []
    for response, p in zip(responses, params):
        try:
            results.append(bytes.fromhex(_result(response, p, raise_contract_logic_error_on_revert)[2:]))
        except (ContractLogicError, Web3RPCError) as exc:  # this call's own error
            results.append(exc)
    return results


async def eth_calls_one_by_one(w3: AsyncWeb3, calls: Sequence[tuple[dict[str, Any], int | str]]
                               ) -> list[bytes | BaseException]:
    out: list[bytes | BaseException] = []
    for tx, block in calls:
        try:
            out.append(await eth_call(w3, tx, block))
        except (ContractLogicError, Web3RPCError) as exc:  # this call's own error
            out.append(exc)
    return out


_RECEIPT_INTS = frozenset({"blockNumber", "cumulativeGasUsed", "effectiveGasPrice", "gasUsed", "status",
                           "transactionIndex", "type", "blobGasUsed", "blobGasPrice", "logIndex"})
_RECEIPT_BYTES = frozenset({"blockHash", "transactionHash", "logsBloom", "data", "root"})
_RECEIPT_ADDRESSES = frozenset({"from", "to", "contractAddress", "address"})


@functools.lru_cache(maxsize=1024)
def checksum(address: str) -> str:
    """to_checksum_address, remembered (a keccak per call otherwise; receipts repeat a few addresses)."""
    return to_checksum_address(address)


def _formatted(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            out[key] = None
        elif key in _RECEIPT_INTS:
            out[key] = int(value, 16) if isinstance(value, str) else value
        elif key in _RECEIPT_BYTES:
            out[key] = HexBytes(value)
        elif key in _RECEIPT_ADDRESSES:
            out[key] = checksum(value)
        elif key == "topics":
            out[key] = [HexBytes(t) for t in value]
        elif key == "logs":
            out[key] = [_formatted(entry) for entry in value]
        else:
            out[key] = value
    return out


def parse_receipt(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A raw eth_getTransactionReceipt result as web3 formats what Tessera reads of it: quantities as
    int, hashes, data and topics as HexBytes, addresses checksummed (a plain dict, not an AttributeDict)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("logs"), list):
        raise ProviderConnectionError(f"malformed transaction receipt: {str(raw)[:200]}")
    return _formatted(raw)


async def block_number(w3: AsyncWeb3) -> int:
    """eth_blockNumber."""
    if lean(w3) is None:
        return int(await w3.eth.block_number)
    return int(await request(w3, "eth_blockNumber", []), 16)


async def block_header(w3: AsyncWeb3, block: int | str) -> dict[str, Any] | None:
    """{"number": int, "hash": bytes, "timestamp": int} of a block by number or tag (without its
    transactions), None when the node has no such block."""
    if lean(w3) is None:
        try:
            found = await w3.eth.get_block(block)
        except Web3RPCError:  # BlockNotFound
            return None
        return {"number": int(found["number"]), "hash": bytes(found["hash"]) if "hash" in found else None,
                "timestamp": int(found["timestamp"]) if "timestamp" in found else None}
    try:
        raw = await request(w3, "eth_getBlockByNumber", [block_param(block), False], raise_block_not_found_on_error)
    except BlockNotFound:  # some nodes answer an unknown block with an error, not null
        return None
    if raw is None:
        return None
    return {"number": int(raw["number"], 16), "hash": bytes.fromhex(raw["hash"][2:]),
            "timestamp": int(raw["timestamp"], 16)}


async def estimate_gas(w3: AsyncWeb3, tx: dict[str, Any]) -> int:
    """eth_estimateGas; a refusal raises ContractLogicError as web3's `eth.estimate_gas` does."""
    if lean(w3) is None:
        return int(await w3.eth.estimate_gas(tx))
    return int(await request(w3, "eth_estimateGas", [_call_params(tx)], raise_contract_logic_error_on_revert), 16)


async def create_access_list_gas(w3: AsyncWeb3, tx: dict[str, Any], block: int | str = "latest") -> int:
    """eth_createAccessList's `gasUsed`: the gas of one execution of `tx` (EIP-2930; geth, reth,
    erigon, nethermind, anvil), where eth_estimateGas runs a binary search of ~15. A revert raises
    ContractLogicError: anvil answers it as eth_call does (with the revert data), geth with an
    `error` field in the result (no data); a node without the method raises Web3RPCError."""
    if lean(w3) is None:
        result = dict(await w3.eth.create_access_list(tx, block))
    else:
        result = await request(w3, "eth_createAccessList", [_call_params(tx), block_param(block)],
                               raise_contract_logic_error_on_revert)
    if not isinstance(result, dict) or "gasUsed" not in result:
        raise ProviderConnectionError(f"malformed eth_createAccessList answer: {str(result)[:200]}")
    if result.get("error"):
        raise ContractLogicError(f"eth_createAccessList: {result['error']}")
    used = result["gasUsed"]
    return int(used, 16) if isinstance(used, str) else int(used)


async def block_gas_limit(w3: AsyncWeb3) -> int:
    """The latest block's gas limit."""
    if lean(w3) is None:
        return int((await w3.eth.get_block("latest"))["gasLimit"])
    return int((await request(w3, "eth_getBlockByNumber", ["latest", False]))["gasLimit"], 16)


async def latest_fees_header(w3: AsyncWeb3) -> dict[str, int]:
    """{"number", "baseFeePerGas"} of the latest block (no base fee before EIP-1559)."""
    if lean(w3) is None:
        block = await w3.eth.get_block("latest")
        return {"number": int(block["number"]), "baseFeePerGas": int(block.get("baseFeePerGas") or 0)}
    block = await request(w3, "eth_getBlockByNumber", ["latest", False])
    return {"number": int(block["number"], 16), "baseFeePerGas": int(block.get("baseFeePerGas") or "0x0", 16)}


async def max_priority_fee(w3: AsyncWeb3) -> int:
    """eth_maxPriorityFeePerGas."""
    if lean(w3) is None:
        return int(await w3.eth.max_priority_fee)
    return int(await request(w3, "eth_maxPriorityFeePerGas", []), 16)


async def get_logs(w3: AsyncWeb3, params: dict[str, Any]) -> list[Any]:
    """eth_getLogs (`fromBlock`/`toBlock` as numbers or tags), each log formatted as in parse_receipt."""
    if lean(w3) is None:
        return list(await w3.eth.get_logs(params))
    query = {k: block_param(v) if k in ("fromBlock", "toBlock") else v for k, v in params.items()}
    logs = await request(w3, "eth_getLogs", [query])
    if not isinstance(logs, list):
        raise ProviderConnectionError(f"malformed eth_getLogs answer: {str(logs)[:200]}")
    return [_formatted(entry) for entry in logs]


async def transaction_count(w3: AsyncWeb3, address: str, block: int | str) -> int:
    """eth_getTransactionCount of `address` at `block` ("latest", "pending", a number)."""
    if lean(w3) is None:
        return int(await w3.eth.get_transaction_count(address, block))
    return int(await request(w3, "eth_getTransactionCount", [address, block_param(block)]), 16)


async def send_raw_transaction(w3: AsyncWeb3, raw: bytes) -> None:
    """eth_sendRawTransaction; the node's refusal raises Web3RPCError as web3 raises it."""
    if lean(w3) is None:
        await w3.eth.send_raw_transaction(raw)
        return
    await request(w3, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()])


async def receipt(w3: AsyncWeb3, tx_hash: str) -> Any | None:
    """The transaction's receipt, or None while it is not mined (or unknown)."""
    if lean(w3) is None:
        try:
            return await w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
    try:
        return parse_receipt(await request(w3, "eth_getTransactionReceipt", [tx_hash]))
    except TransactionNotFound:  # nodes that answer an unknown transaction with an error
        return None


async def transaction_known(w3: AsyncWeb3, tx_hash: str) -> bool:
    """Whether the node has the transaction (pending in its pool or mined)."""
    if lean(w3) is None:
        try:
            await w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            return False
    try:
        return await request(w3, "eth_getTransactionByHash", [tx_hash]) is not None
    except TransactionNotFound:  # nodes that answer an unknown transaction with an error
        return False


class CallBatcher:
    """eth_calls asked for within the same few event-loop turns (the many messages of a batch asking
    for their delivery status) go out as one JSON-RPC batch of at most `size` through `call` — one
    pool call, so failover and retries cover the batch. Each caller gets its own call's return
    data or error; a failure of the whole batch (every endpoint down) reaches every caller in it."""

    def __init__(self, call: PoolCall, size: int = 50) -> None:
        if size < 1:
            raise ValueError(f"a call batch holds at least one call, not {size}")
        self._call = call
        self.size = size
        self._queue: list[tuple[dict[str, Any], int | str, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Future[None]] = set()  # held: a running batch is not collected

    async def eth_call(self, tx: dict[str, Any], block: int | str = "latest") -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            # Two turns: callers woken together by one shared read (the final block) all enqueue first.
            loop.call_soon(loop.call_soon, self._flush)
        self._queue.append((tx, block, future))
        if len(self._queue) >= self.size:
            self._flush()
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        if queue:
            task = asyncio.ensure_future(self._send(queue))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, queue: list[tuple[dict[str, Any], int | str, asyncio.Future[Any]]]) -> None:
        calls = [(tx, block) for tx, block, _ in queue]
        try:
            results = await self._call(f"eth_call x{len(calls)}", lambda w3: eth_calls(w3, calls))
        except asyncio.CancelledError:
            for *_, future in queue:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller hears it
            for *_, future in queue:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(queue, results):
            if not future.done():
                future.set_result(result)


def to_hex(data: bytes) -> str:
    """0x-hex of bytes (hashes, topics, calldata as web3 returns them)."""
    return "0x" + bytes(data).hex()


# --- revert reasons -----------------------------------------------------------------------


def decode_revert(abi: list[dict[str, Any]], data: str | bytes | None) -> str:
    """A readable revert reason: custom errors from the ABI by name, Error(string), Panic(uint)."""
    if data is None:
        return "no revert data (out of gas, or a failing precompile without a reason)"
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return f"revert data 0x{raw.hex()}" if raw else "reverted without data"
    selector, body = raw[:4], raw[4:]
    if selector == bytes.fromhex("08c379a0"):
        return f"Error({abi_decode(['string'], body)[0]!r})"
    if selector == bytes.fromhex("4e487b71"):
        return f"Panic(0x{abi_decode(['uint256'], body)[0]:02x})"
    for entry in abi:
        if entry.get("type") != "error":
            continue
        if function_abi_to_4byte_selector(entry) == selector:
            types = [i["type"] for i in entry.get("inputs", [])]
            try:
                values = abi_decode(types, body) if types else ()
            except Exception:  # noqa: BLE001 - malformed body: still name the error
                return f"{entry['name']}(<undecodable 0x{body.hex()}>)"
            shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
            return f"{entry['name']}({shown})"
    return f"unknown error 0x{raw.hex()}"


def revert_data(error: BaseException) -> str | None:
    """The revert data web3 attached to a ContractLogicError, if any."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


def error_entries(abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The custom errors of an ABI (to decode reverts bubbled up from another contract)."""
    return [e for e in abi if e.get("type") == "error"]
