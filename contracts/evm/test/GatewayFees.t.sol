// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Owned2Step} from "../src/lib/Owned2Step.sol";
import {Test} from "./utils/Test.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {FeedStore} from "../src/feeds/FeedStore.sol";
import {Gateway} from "../src/Gateway.sol";
import {FixedPrices} from "../src/test/FixedPrices.sol";
import {ReentrantPayer} from "../src/test/FeeAttackers.sol";

interface VmFees {
    function deal(address account, uint256 newBalance) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
}

/// Gateway.quote / paid send / refund / claimFees / pause, the attacks on each (issue 14 item 3):
/// prices from the real FeedStore holding a committee-signed round (tests/vectors/feeds_v1.json),
/// and from FixedPrices where a second token's price is needed for the conversion.
contract GatewayFeesTest is Test {
    VmFees internal constant vmx = VmFees(address(uint160(uint256(keccak256("hevm cheat code")))));

    string internal constant VECTORS = "../../tests/vectors/feeds_v1.json";
    bytes32 internal constant ETH_USD = bytes32("ETH/USD");
    bytes32 internal constant SOL_USD = bytes32("SOL/USD");
    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant EVM_DST = 424242;
    uint32 internal constant SOL_DST = 900;
    uint256 internal constant FEE = 1000; // the flat part, wei
    address internal constant OWNER = address(0x0A11CE);
    address internal constant RELAYER = address(0xBEEF01);
    uint256 internal constant PUBLISHED_S = 1795431723; // the signed round's published_at
    int256 internal constant ETH_PRICE = 345650000000; // the signed round's answer (8 decimals)

    CommitteeVerifier internal verifier;
    FeedStore internal store;
    Gateway internal gateway;

    function setUp() public {
        string memory json = vm.readFile(VECTORS);
        verifier = new CommitteeVerifier(DOMAIN, 1, 4, 3, vm.parseJsonBytes(json, ".signed_round.committee.group_key"));
        store = new FeedStore(verifier, address(this));
        store.registerFeed(ETH_USD, 8, "Ether in US dollars");
        vm.warp(PUBLISHED_S);
        store.update(vm.parseJsonBytes(json, ".signed_round.report.encoded"), 1, vm.parseJsonBytes(json, ".signed_round.signature"));
        gateway = new Gateway(DOMAIN, address(verifier), FEE, OWNER);
        vm.prank(OWNER);
        gateway.setPriceFeeds(address(store), ETH_USD);
        vm.prank(OWNER);
        gateway.setBeneficiary(RELAYER);
        // An EVM destination (ETH priced): 60k gas + 16 per byte at 2 gwei, 10 % margin, 1 h max age.
        vm.prank(OWNER);
        gateway.setDestinationFee(EVM_DST, Gateway.DestinationFee(2 gwei, 60_000, 16, 18, 1000, 3600, ETH_USD));
        vmx.deal(address(this), 100 ether);
    }

    receive() external payable {}

    function _evmCost(uint256 len) internal pure returns (uint256) {
        uint256 cost = (60_000 + 16 * len) * 2 gwei; // same token both sides: only the margin
        return (cost * 11_000 + 9_999) / 10_000;
    }

    // --- quote ---------------------------------------------------------------------------

    function test_quoteIsFlatFeePlusDeliveryCostWithMargin() public view {
        assertEq(gateway.quote(EVM_DST, 0), FEE + _evmCost(0), "empty payload");
        assertEq(gateway.quote(EVM_DST, 300), FEE + _evmCost(300), "300 bytes");
        assertEq(gateway.quote(77, 300), FEE, "a destination without a config costs the flat fee");
    }

    function test_quoteConvertsTheDestinationTokenWithFeedPrices() public {
        FixedPrices prices = new FixedPrices();
        prices.set(ETH_USD, 8, 345650000000, block.timestamp); // $3,456.50
        prices.set(SOL_USD, 6, 150250000, block.timestamp); // $150.25, other decimals on purpose
        vm.prank(OWNER);
        gateway.setPriceFeeds(address(prices), ETH_USD);
        // 5,000 lamports + 2 per byte, 25 % margin.
        vm.prank(OWNER);
        gateway.setDestinationFee(SOL_DST, Gateway.DestinationFee(1, 5_000, 2, 9, 2500, 600, SOL_USD));
        uint256 lamports = 5_000 + 2 * 100;
        // lamports × $/SOL ÷ $/ETH, in wei, × 1.25, rounded up.
        uint256 num = lamports * 150250000 * 1e18 * 1e8 * 12_500;
        uint256 den = 345650000000 * 1e9 * 1e6 * 10_000;
        assertEq(gateway.deliveryCost(SOL_DST, 100), (num + den - 1) / den, "converted");
        // Sanity: 5,200 lamports of SOL at $150.25 is $0.00078 = ~2.26e11 wei at $3,456.50 (+25 %).
        assertTrue(gateway.deliveryCost(SOL_DST, 100) > 2.8e11 && gateway.deliveryCost(SOL_DST, 100) < 2.9e11, "magnitude");
    }

    /// A stale price must refuse the quote and the send, never quote a zero or old fee.
    function test_stalePriceRefusesTheQuoteAndTheSend() public {
        vm.warp(PUBLISHED_S + 3601);
        bytes memory stale = abi.encodeWithSelector(Gateway.PriceStale.selector, ETH_USD, PUBLISHED_S, 3600, PUBLISHED_S + 3601);
        vm.expectRevert(stale);
        gateway.quote(EVM_DST, 10);
        vm.expectRevert(stale);
        gateway.send{value: 1 ether}(EVM_DST, bytes32(uint256(1)), 4, "0123456789");
        assertEq(gateway.nextNonce(), 0, "nothing sent");
    }

    function test_missingPriceRefusesTheQuote() public {
        vm.prank(OWNER);
        gateway.setDestinationFee(SOL_DST, Gateway.DestinationFee(1, 5_000, 2, 9, 0, 600, SOL_USD));
        vm.expectRevert(abi.encodeWithSelector(Gateway.PriceMissing.selector, SOL_USD)); // not registered
        gateway.quote(SOL_DST, 1);
        store.registerFeed(SOL_USD, 8, "Solana in US dollars");
        vm.expectRevert(abi.encodeWithSelector(Gateway.PriceMissing.selector, SOL_USD)); // no round yet
        gateway.send{value: 1 ether}(SOL_DST, bytes32(uint256(1)), 4, "x");
    }

    function test_ownerOnlyFeeSettingsAndBadConfigs() public {
        Gateway.DestinationFee memory c = Gateway.DestinationFee(1, 1, 1, 9, 0, 60, SOL_USD);
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.setDestinationFee(SOL_DST, c);
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.setPriceFeeds(address(store), SOL_USD);
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.setFlatFeeSender(address(this), true);
        vmx.startPrank(OWNER);
        c.marginBps = 10_001;
        vm.expectRevert(abi.encodeWithSelector(Gateway.MarginTooHigh.selector, uint16(10_001), 10_000));
        gateway.setDestinationFee(SOL_DST, c);
        c.marginBps = 0;
        c.maxPriceAge = 0;
        vm.expectRevert(abi.encodeWithSelector(Gateway.BadDestinationFee.selector, SOL_DST, "maxPriceAge is zero"));
        gateway.setDestinationFee(SOL_DST, c);
        vm.expectRevert(abi.encodeWithSelector(Gateway.SameDomain.selector, DOMAIN));
        gateway.setDestinationFee(DOMAIN, c);
        vmx.stopPrank();
    }

    // --- paid send -----------------------------------------------------------------------

    function test_underpaymentIsRefused() public {
        uint256 q = gateway.quote(EVM_DST, 5);
        vm.expectRevert(abi.encodeWithSelector(Gateway.FeeTooLow.selector, q - 1, q));
        gateway.send{value: q - 1}(EVM_DST, bytes32(uint256(1)), 4, "hello");
        vm.expectRevert(abi.encodeWithSelector(Gateway.FeeTooLow.selector, FEE, q));
        gateway.send{value: FEE}(EVM_DST, bytes32(uint256(1)), 4, "hello"); // the old flat fee alone
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "hello");
        assertEq(gateway.accruedFees(), q, "exact quote accepted");
    }

    function test_overpaymentIsRefundedToThePayerAndTheFeeRecorded() public {
        uint256 q = gateway.quote(EVM_DST, 5);
        uint256 before = address(this).balance;
        vm.expectEmit(false, true, false, true);
        emit Gateway.FeePaid(bytes32(0), address(this), q, 1 ether);
        gateway.send{value: q + 1 ether}(EVM_DST, bytes32(uint256(1)), 4, "hello");
        assertEq(before - address(this).balance, q, "paid the quote only");
        assertEq(address(gateway).balance, q, "gateway holds the fee only");
    }

    /// The refund goes to msg.sender: a payer contract gets it even when an EOA started the call,
    /// and there is no parameter through which anyone could name another recipient.
    function test_refundGoesToTheCallerOnly() public {
        ReentrantPayer payer = new ReentrantPayer(address(gateway));
        vmx.deal(address(payer), 1 ether);
        uint256 q = gateway.quote(EVM_DST, 1);
        vm.prank(address(0xE0A));
        payer.sendPaying(EVM_DST, q + 0.5 ether);
        assertEq(payer.received(), 0.5 ether, "refund to the calling contract");
        assertEq(address(payer).balance, 1 ether - q, "payer out of the quote only");
        assertEq(address(0xE0A).balance, 0, "not to the transaction's origin");
    }

    /// A payer that re-enters send (with the refund) or claimFees from its receive() is refused by
    /// the lock; the first send stands and was charged once.
    function test_reentrantRefundReceiverIsRefused() public {
        ReentrantPayer payer = new ReentrantPayer(address(gateway));
        vmx.deal(address(payer), 1 ether);
        uint256 q = gateway.quote(EVM_DST, 1);
        payer.setMode(1);
        payer.sendPaying(EVM_DST, q + 0.1 ether);
        payer.setMode(2);
        payer.sendPaying(EVM_DST, q + 0.1 ether);
        assertEq(payer.reentrySucceeded(), 0, "no re-entrant send or claim got through");
        assertEq(gateway.nextNonce(), 2, "two sends");
        assertEq(gateway.accruedFees(), 2 * q, "charged once each");
        assertEq(address(payer).balance, 1 ether - 2 * q, "refunds received");
    }

    /// A beneficiary contract that claims again from its receive() is paid once.
    function test_reentrantBeneficiaryCannotDoubleClaim() public {
        ReentrantPayer b = new ReentrantPayer(address(gateway));
        vm.prank(OWNER);
        gateway.setBeneficiary(address(b));
        uint256 q = gateway.quote(EVM_DST, 1);
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "a");
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "b");
        b.setMode(2);
        b.claim();
        assertEq(b.received(), 2 * q, "paid what was accrued, once");
        assertEq(b.reentrySucceeded(), 0, "re-entrant claim refused");
        assertEq(gateway.accruedFees(), 0, "nothing owed");
        assertEq(address(b).balance, 2 * q, "balance");
    }

    function test_onlyTheBeneficiaryClaims() public {
        uint256 q = gateway.quote(EVM_DST, 1);
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "a");
        vm.expectRevert(abi.encodeWithSelector(Gateway.NotBeneficiary.selector, address(this), RELAYER));
        gateway.claimFees();
        vm.prank(OWNER); // not even the owner: the fees are the beneficiary's
        vm.expectRevert(abi.encodeWithSelector(Gateway.NotBeneficiary.selector, OWNER, RELAYER));
        gateway.claimFees();
        vm.prank(RELAYER);
        assertEq(gateway.claimFees(), q, "claimed");
        assertEq(RELAYER.balance, q, "beneficiary paid");
    }

    /// A task board (flat-fee sender) pays fee() under FEE_INCREASE_DELAY whatever the prices do,
    /// and what it forwards is kept (no refund to a contract that cannot take one).
    function test_flatFeeSenderPaysTheDelayedFlatFee() public {
        vm.prank(OWNER);
        gateway.setFlatFeeSender(address(this), true);
        gateway.send{value: FEE}(EVM_DST, bytes32(uint256(1)), 1, "task");
        vm.warp(PUBLISHED_S + 7200); // prices stale: a flat sender does not need them
        gateway.send{value: FEE + 5}(EVM_DST, bytes32(uint256(1)), 1, "task");
        assertEq(gateway.accruedFees(), 2 * FEE + 5, "flat fees, excess kept");
    }

    // --- pause ---------------------------------------------------------------------------

    function test_pauseIsOwnerOnlyAndBlocksSends() public {
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.pause();
        vm.prank(OWNER);
        gateway.pause();
        assertTrue(gateway.paused(), "paused");
        uint256 q = gateway.quote(EVM_DST, 1);
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "a");
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.unpause();
        vm.prank(OWNER);
        gateway.unpause();
        gateway.send{value: q}(EVM_DST, bytes32(uint256(1)), 4, "a");
        vm.prank(OWNER);
        vm.expectRevert(Gateway.NotPaused.selector);
        gateway.unpause();
    }
}
