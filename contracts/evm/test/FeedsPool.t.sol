// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {MockToken} from "../src/feeds/MockToken.sol";
import {ConstantProductPool} from "../src/feeds/ConstantProductPool.sol";

/// The localnet market: x·y = k never decreases (the fee stays in), and trades move the price.
contract FeedsPoolTest is Test {
    MockToken internal weth;
    MockToken internal usd;
    ConstantProductPool internal pool;

    function setUp() public {
        weth = new MockToken("Mock Ether", "mETH", 18);
        usd = new MockToken("Mock Dollar", "mUSD", 6);
        pool = new ConstantProductPool(weth, usd);
        weth.mint(address(this), 1_000_000 ether);
        usd.mint(address(this), 10_000_000_000 * 1e6);
        weth.approve(address(pool), type(uint256).max);
        usd.approve(address(pool), type(uint256).max);
        pool.addLiquidity(1000 ether, 3_456_500 * 1e6); // 3456.5 mUSD per mETH
    }

    function _k() internal view returns (uint256) {
        (uint112 r0, uint112 r1,) = pool.getReserves();
        return uint256(r0) * r1;
    }

    function test_initialPrice() public view {
        // spotPrice is raw token1 per token0 · 1e18: 3456.5e6 / 1e18 · 1e18.
        assertEq(pool.spotPrice(), 3_456_500_000, "spot price in raw units");
        (uint112 r0, uint112 r1, uint32 ts) = pool.getReserves();
        assertTrue(r0 == 1000 ether && r1 == 3_456_500 * 1e6 && ts == block.timestamp, "reserves");
    }

    function test_swapsMovePriceAndKeepInvariant() public {
        uint256 price = pool.spotPrice();
        uint256 k = _k();
        // Buying mETH with mUSD raises its price.
        uint256 out = pool.swap(address(usd), 10_000 * 1e6, 0, address(this));
        assertTrue(out > 0, "got mETH");
        assertTrue(pool.spotPrice() > price, "price up after buying base");
        assertTrue(_k() >= k, "k must not decrease");
        price = pool.spotPrice();
        k = _k();
        // Selling mETH lowers it.
        pool.swap(address(weth), 5 ether, 0, address(this));
        assertTrue(pool.spotPrice() < price, "price down after selling base");
        assertTrue(_k() >= k, "k must not decrease");
    }

    function test_feeIsCharged() public {
        // Without a fee, out = in·R1/(R0+in); the 0.3 % fee gives strictly less.
        (uint112 r0, uint112 r1,) = pool.getReserves();
        uint256 amountIn = 1 ether;
        uint256 noFee = amountIn * r1 / (uint256(r0) + amountIn);
        uint256 out = pool.swap(address(weth), amountIn, 0, address(this));
        assertEq(out, amountIn * 997 * r1 / (uint256(r0) * 1000 + amountIn * 997), "fee formula");
        assertTrue(out < noFee, "fee charged");
    }

    function test_manyRandomSwapsKeepInvariant() public {
        uint256 k = _k();
        uint256 seed = 7;
        for (uint256 i = 0; i < 50; i++) {
            seed = uint256(keccak256(abi.encode(seed)));
            if (seed & 1 == 0) pool.swap(address(weth), (seed >> 8) % 20 ether + 1, 0, address(this));
            else pool.swap(address(usd), (seed >> 8) % (50_000 * 1e6) + 1, 0, address(this));
            uint256 next = _k();
            assertTrue(next >= k, "k decreased");
            k = next;
        }
        (uint112 r0, uint112 r1,) = pool.getReserves();
        assertEq(weth.balanceOf(address(pool)), r0, "reserve0 = balance");
        assertEq(usd.balanceOf(address(pool)), r1, "reserve1 = balance");
    }

    function test_badSwapsRevert() public {
        vm.expectRevert(abi.encodeWithSelector(ConstantProductPool.NotAPoolToken.selector, address(0xBEEF)));
        pool.swap(address(0xBEEF), 1, 0, address(this));
        vm.expectRevert(ConstantProductPool.ZeroAmount.selector);
        pool.swap(address(weth), 0, 0, address(this));
        uint256 quoted = pool.getAmountOut(address(weth), 1 ether);
        vm.expectRevert(abi.encodeWithSelector(ConstantProductPool.Slippage.selector, quoted, quoted + 1));
        pool.swap(address(weth), 1 ether, quoted + 1, address(this));
        ConstantProductPool empty = new ConstantProductPool(weth, usd);
        vm.expectRevert(ConstantProductPool.NoLiquidity.selector);
        empty.spotPrice();
        vm.expectRevert(ConstantProductPool.NoLiquidity.selector);
        empty.swap(address(weth), 1 ether, 0, address(this));
    }
}
