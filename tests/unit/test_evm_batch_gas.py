"""The batch gas limit's pieces without a node (the e2e side is tests/e2e/test_evm_gas_limits.py):
eth_createAccessList's answer as anvil and geth give it (a revert as a JSON-RPC error with data, or
as an `error` field without), a malformed answer refused, the limit's headroom, and which node
errors mean "no such method" (asked no more) rather than a passing failure."""

from __future__ import annotations

from typing import Any

import pytest
from web3.exceptions import ContractLogicError, ProviderConnectionError, Web3RPCError

from adapters.evm import gateway, rpc
from adapters.evm.rpc import revert_data


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake node answers eth_createAccessList with (`result`, or `raise`), and what it was asked."""
    state: dict[str, Any] = {"asked": []}

    async def request(w3: Any, method: str, params: list[Any], error_formatters: Any = None) -> Any:
        state["asked"].append((method, params))
        if "raise" in state:
            raise state["raise"]
        return state["result"]

    monkeypatch.setattr(rpc, "lean", lambda w3: object())
    monkeypatch.setattr(rpc, "request", request)
    return state


TX = {"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "data": "0xabcd", "gas": 30_000_000}


async def test_gas_used_is_read_from_the_answer(answer: dict[str, Any]) -> None:
    answer["result"] = {"accessList": [{"address": TX["to"], "storageKeys": []}], "gasUsed": "0x758be6"}
    assert await rpc.create_access_list_gas(object(), TX) == 7_703_526
    method, params = answer["asked"][0]
    assert method == "eth_createAccessList" and params == [{**TX, "gas": hex(30_000_000)}, "latest"]


async def test_a_revert_in_the_result_raises_without_revert_data(answer: dict[str, Any]) -> None:
    answer["result"] = {"accessList": [], "gasUsed": "0x5208", "error": "execution reverted"}  # geth
    with pytest.raises(ContractLogicError, match="execution reverted") as caught:
        await rpc.create_access_list_gas(object(), TX)
    assert revert_data(caught.value) is None  # the adapter then asks the estimate why


async def test_a_revert_as_an_error_keeps_its_data(answer: dict[str, Any]) -> None:
    answer["raise"] = ContractLogicError("execution reverted", data="0xfc1d344c" + "00" * 32)  # anvil
    with pytest.raises(ContractLogicError) as caught:
        await rpc.create_access_list_gas(object(), TX)
    assert revert_data(caught.value) == "0xfc1d344c" + "00" * 32


@pytest.mark.parametrize("result", [None, [], {"accessList": []}, "0x5208"])
async def test_a_malformed_answer_is_refused(answer: dict[str, Any], result: Any) -> None:
    answer["result"] = result
    with pytest.raises(ProviderConnectionError, match="malformed eth_createAccessList answer"):
        await rpc.create_access_list_gas(object(), TX)


@pytest.mark.parametrize("measured", [21_000, 300_000, 5_000_000, 7_703_526, 21_000_000])
def test_the_limit_leaves_a_handler_its_all_over_what_the_batch_can_use(measured: int) -> None:
    reserve, most = 50_000, 2_000_000
    limit = gateway.batch_gas_limit(measured, reserve, most)
    # Before refunds (at most a fifth of the gas used) and without the access list the node priced
    # `measured` with (at most 100 saved per >= 2,000 gas of cold access): <= 5/4 x 21/20 x measured.
    most_used = measured * 5 / 4 * 21 / 20
    assert limit - most_used >= reserve + most + gateway.BATCH_GAS_MARGIN


@pytest.mark.parametrize("error, missing", [
    ({"code": -32601, "message": "Method not found"}, True),
    ({"code": -32000, "message": "the method eth_createAccessList does not exist/is not available"}, True),
    ({"code": -32000, "message": "eth_createAccessList is not supported"}, True),
    ({"code": -32000, "message": "header not found"}, False),
    ({"code": -32603, "message": "internal error"}, False),
])
def test_only_a_missing_method_stops_the_asking(error: dict[str, Any], missing: bool) -> None:
    exc = Web3RPCError(error["message"], rpc_response={"jsonrpc": "2.0", "id": 1, "error": error})
    assert gateway._method_missing(exc) is missing
