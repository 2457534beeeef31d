// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {MockToken} from "./MockToken.sol";

/// A constant-product (x·y = k) pool with a 0.3 % fee, Uniswap-v2 style, for the localnet market
/// whose price the `evm_pool` feed source reads. token0 is the base asset, token1 the quote.
/// No LP shares: liquidity is added by whoever wants it and never withdrawn (a test market).
contract ConstantProductPool {
    uint256 public constant FEE_NUM = 997; // 0.3 % of the input stays in the pool
    uint256 public constant FEE_DEN = 1000;

    MockToken public immutable token0;
    MockToken public immutable token1;
    uint112 internal _reserve0;
    uint112 internal _reserve1;
    uint32 internal _blockTimestampLast;

    event Sync(uint112 reserve0, uint112 reserve1);
    event Swap(address indexed sender, address indexed tokenIn, uint256 amountIn, uint256 amountOut, address indexed to);

    error SameToken();
    error NotAPoolToken(address token);
    error ZeroAmount();
    error NoLiquidity();
    error Slippage(uint256 amountOut, uint256 minOut);
    error ReserveOverflow();
    error TransferFailed();

    constructor(MockToken token0_, MockToken token1_) {
        if (address(token0_) == address(token1_)) revert SameToken();
        token0 = token0_;
        token1 = token1_;
    }

    /// Uniswap v2's signature, so tools that read pairs read this pool.
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast) {
        return (_reserve0, _reserve1, _blockTimestampLast);
    }

    /// token1 per token0 in raw units, scaled by 1e18 (no decimals adjustment).
    function spotPrice() external view returns (uint256) {
        if (_reserve0 == 0) revert NoLiquidity();
        return uint256(_reserve1) * 1e18 / _reserve0;
    }

    function addLiquidity(uint256 amount0, uint256 amount1) external {
        if (amount0 == 0 || amount1 == 0) revert ZeroAmount();
        _pull(token0, amount0);
        _pull(token1, amount1);
        _sync(uint256(_reserve0) + amount0, uint256(_reserve1) + amount1);
    }

    function getAmountOut(address tokenIn, uint256 amountIn) public view returns (uint256) {
        (uint256 reserveIn, uint256 reserveOut) = _oriented(tokenIn);
        if (amountIn == 0) revert ZeroAmount();
        if (reserveIn == 0 || reserveOut == 0) revert NoLiquidity();
        uint256 inWithFee = amountIn * FEE_NUM;
        return inWithFee * reserveOut / (reserveIn * FEE_DEN + inWithFee);
    }

    function swap(address tokenIn, uint256 amountIn, uint256 minOut, address to) external returns (uint256 amountOut) {
        amountOut = getAmountOut(tokenIn, amountIn);
        if (amountOut < minOut || amountOut == 0) revert Slippage(amountOut, minOut);
        bool zeroForOne = tokenIn == address(token0);
        _pull(MockToken(tokenIn), amountIn);
        if (!(zeroForOne ? token1 : token0).transfer(to, amountOut)) revert TransferFailed();
        if (zeroForOne) _sync(uint256(_reserve0) + amountIn, uint256(_reserve1) - amountOut);
        else _sync(uint256(_reserve0) - amountOut, uint256(_reserve1) + amountIn);
        emit Swap(msg.sender, tokenIn, amountIn, amountOut, to);
    }

    function _pull(MockToken token, uint256 amount) private {
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TransferFailed();
    }

    function _oriented(address tokenIn) private view returns (uint256 reserveIn, uint256 reserveOut) {
        if (tokenIn == address(token0)) return (_reserve0, _reserve1);
        if (tokenIn == address(token1)) return (_reserve1, _reserve0);
        revert NotAPoolToken(tokenIn);
    }

    function _sync(uint256 reserve0, uint256 reserve1) private {
        if (reserve0 > type(uint112).max || reserve1 > type(uint112).max) revert ReserveOverflow();
        _reserve0 = uint112(reserve0);
        _reserve1 = uint112(reserve1);
        _blockTimestampLast = uint32(block.timestamp);
        emit Sync(_reserve0, _reserve1);
    }
}
