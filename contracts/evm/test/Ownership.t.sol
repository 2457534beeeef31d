// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Owned2Step} from "../src/lib/Owned2Step.sol";
import {Test} from "./utils/Test.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {FeedStore} from "../src/feeds/FeedStore.sol";

/// Cheatcodes this file needs beyond test/utils/Test.sol's subset (same cheatcode address).
interface VmOwnership {
    function load(address target, bytes32 slot) external view returns (bytes32);
}

/// What both owned contracts (Gateway, FeedStore) expose of their two-step ownership.
interface IOwnable2Step {
    function owner() external view returns (address);
    function pendingOwner() external view returns (address);
    function transferOwnership(address newOwner) external;
    function acceptOwnership() external;
}

/// The two-step ownership transfer of the Gateway and the FeedStore (as OpenZeppelin's Ownable2Step),
/// attacked the ways a handover goes wrong: a stranger accepting, the old owner acting after the
/// acceptance, a replaced proposal accepted anyway, an accept with nothing proposed, a cancelled
/// proposal accepted. Every case runs against both contracts (one concrete test contract each).
abstract contract OwnershipCases is Test {
    address internal constant OWNER = address(0x0A11CE);
    address internal constant PROPOSED = address(0xB0B);
    address internal constant OTHER = address(0xCA201);
    address internal constant STRANGER = address(0xBAD);

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    IOwnable2Step internal owned;
    CommitteeVerifier internal verifier;

    /// Deploys the contract under test, owned by OWNER.
    function _deploy() internal virtual returns (IOwnable2Step);

    /// One owner-only call, made by `caller` (reverts NotOwner(caller) for anyone but the owner).
    function _ownerAction(address caller) internal virtual;

    function setUp() public {
        string memory fixture = vm.readFile("test/fixtures/gateway.json");
        verifier = new CommitteeVerifier(31337, 1, 4, 3, vm.parseJsonBytes(fixture, ".group_key"));
        owned = _deploy();
    }

    function _propose(address newOwner) internal {
        vm.prank(OWNER);
        owned.transferOwnership(newOwner);
    }

    function _expectNotOwner(address caller) internal {
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, caller));
    }

    function _expectNotPending(address caller, address pending) internal {
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotPendingOwner.selector, caller, pending));
    }

    function test_proposingChangesNothingUntilAccepted() public {
        vm.expectEmit();
        emit OwnershipTransferStarted(OWNER, PROPOSED);
        _propose(PROPOSED);
        assertEq(owned.owner(), OWNER, "owner unchanged by the proposal");
        assertEq(owned.pendingOwner(), PROPOSED, "pendingOwner recorded");
        _ownerAction(OWNER); // the old owner keeps every power until the acceptance
        _expectNotOwner(PROPOSED);
        this.ownerActionAs(PROPOSED); // the proposed owner has none yet
    }

    function test_acceptMovesOwnershipAndTheOldOwnerLosesEveryPower() public {
        _propose(PROPOSED);
        vm.expectEmit();
        emit OwnershipTransferred(OWNER, PROPOSED);
        vm.prank(PROPOSED);
        owned.acceptOwnership();
        assertEq(owned.owner(), PROPOSED, "owner after acceptance");
        assertEq(owned.pendingOwner(), address(0), "proposal cleared");
        _expectNotOwner(OWNER);
        this.ownerActionAs(OWNER);
        _expectNotOwner(OWNER);
        vm.prank(OWNER);
        owned.transferOwnership(OWNER); // cannot take it back
        _ownerAction(PROPOSED);
        // The accepted proposal cannot be replayed.
        _expectNotPending(PROPOSED, address(0));
        vm.prank(PROPOSED);
        owned.acceptOwnership();
    }

    function test_attack_strangerCannotAccept() public {
        _propose(PROPOSED);
        _expectNotPending(STRANGER, PROPOSED);
        vm.prank(STRANGER);
        owned.acceptOwnership();
        _expectNotPending(OWNER, PROPOSED); // not even the owner accepts for the proposed account
        vm.prank(OWNER);
        owned.acceptOwnership();
        assertEq(owned.owner(), OWNER, "owner unchanged");
        assertEq(owned.pendingOwner(), PROPOSED, "proposal still pending");
    }

    function test_attack_onlyTheOwnerProposes() public {
        _expectNotOwner(STRANGER);
        vm.prank(STRANGER);
        owned.transferOwnership(STRANGER);
        _propose(PROPOSED);
        _expectNotOwner(PROPOSED); // a pending owner cannot redirect the proposal either
        vm.prank(PROPOSED);
        owned.transferOwnership(STRANGER);
        assertEq(owned.pendingOwner(), PROPOSED, "proposal unchanged");
    }

    function test_attack_acceptWithoutProposal() public {
        assertEq(owned.pendingOwner(), address(0), "nothing proposed after deployment");
        _expectNotPending(STRANGER, address(0));
        vm.prank(STRANGER);
        owned.acceptOwnership();
        _expectNotPending(OWNER, address(0));
        vm.prank(OWNER);
        owned.acceptOwnership();
        assertEq(owned.owner(), OWNER, "owner unchanged");
    }

    function test_attack_secondProposalReplacesTheFirst() public {
        _propose(PROPOSED);
        vm.expectEmit();
        emit OwnershipTransferStarted(OWNER, OTHER);
        _propose(OTHER);
        _expectNotPending(PROPOSED, OTHER);
        vm.prank(PROPOSED);
        owned.acceptOwnership();
        assertEq(owned.owner(), OWNER, "the replaced proposal took nothing");
        vm.prank(OTHER);
        owned.acceptOwnership();
        assertEq(owned.owner(), OTHER, "the second proposal accepted");
    }

    function test_cancelWithTheZeroAddress() public {
        _propose(PROPOSED);
        vm.expectEmit();
        emit OwnershipTransferStarted(OWNER, address(0));
        _propose(address(0));
        assertEq(owned.pendingOwner(), address(0), "proposal cancelled");
        _expectNotPending(PROPOSED, address(0));
        vm.prank(PROPOSED);
        owned.acceptOwnership();
        assertEq(owned.owner(), OWNER, "owner unchanged");
        _ownerAction(OWNER);
        // With nothing pending the zero address is refused: it is never a transfer that "succeeded".
        vm.expectRevert(Owned2Step.ZeroAddress.selector);
        _propose(address(0));
    }

    function test_proposingTheOwnerItselfLeavesItOwner() public {
        _propose(OWNER);
        vm.prank(OWNER);
        owned.acceptOwnership();
        assertEq(owned.owner(), OWNER, "owner");
        assertEq(owned.pendingOwner(), address(0), "proposal cleared");
    }

    /// An external hop so `vm.expectRevert` sees the owner-only call's revert as the next call's.
    function ownerActionAs(address caller) external {
        _ownerAction(caller);
    }
}

contract GatewayOwnershipTest is OwnershipCases {
    VmOwnership internal constant vmo = VmOwnership(address(uint160(uint256(keccak256("hevm cheat code")))));

    function _deploy() internal override returns (IOwnable2Step) {
        return IOwnable2Step(address(new Gateway(31337, address(verifier), 0, OWNER)));
    }

    function _ownerAction(address caller) internal override {
        Gateway gateway = Gateway(payable(address(owned)));
        vm.prank(caller);
        gateway.pause();
        vm.prank(caller);
        gateway.unpause();
    }

    /// The packing the source comments promise: Owned2Step's owner has slot 0, pendingOwner slot 1,
    /// and the Gateway's paused flag shares slot 1 (one cold read on send and delivery). An
    /// acceptance rewrites owner and clears pendingOwner and keeps the paused bit.
    function test_pausedSharesTheProposalSlotAndAcceptanceKeepsPaused() public {
        Gateway gateway = Gateway(payable(address(owned)));
        vm.prank(OWNER);
        gateway.pause();
        _propose(PROPOSED);
        assertEq(vmo.load(address(gateway), bytes32(uint256(0))), bytes32(uint256(uint160(OWNER))), "slot 0");
        assertEq(vmo.load(address(gateway), bytes32(uint256(1))), bytes32(uint256(uint160(PROPOSED)) | (1 << 160)), "slot 1");
        vm.prank(PROPOSED);
        gateway.acceptOwnership();
        assertEq(vmo.load(address(gateway), bytes32(uint256(0))), bytes32(uint256(uint160(PROPOSED))), "slot 0 after");
        assertEq(vmo.load(address(gateway), bytes32(uint256(1))), bytes32(uint256(1 << 160)), "slot 1 after");
        assertTrue(gateway.paused(), "still paused after the handover");
        _expectNotOwner(OWNER);
        vm.prank(OWNER);
        gateway.unpause();
        vm.prank(PROPOSED);
        gateway.unpause();
        assertTrue(!gateway.paused(), "the new owner unpaused");
    }

    /// The fee beneficiary is not the owner: a handover leaves it where it was.
    function test_handoverLeavesTheBeneficiary() public {
        Gateway gateway = Gateway(payable(address(owned)));
        _propose(PROPOSED);
        vm.prank(PROPOSED);
        gateway.acceptOwnership();
        assertEq(gateway.beneficiary(), OWNER, "beneficiary unchanged");
    }
}

contract FeedStoreOwnershipTest is OwnershipCases {
    uint256 internal feeds;

    function _deploy() internal override returns (IOwnable2Step) {
        vm.expectEmit();
        emit OwnershipTransferred(address(0), OWNER);
        return IOwnable2Step(address(new FeedStore(verifier, OWNER)));
    }

    function _ownerAction(address caller) internal override {
        feeds += 1;
        bytes32 feedId = bytes32(bytes.concat("F/", bytes(vm.toString(feeds))));
        vm.prank(caller);
        FeedStore(address(owned)).registerFeed(feedId, 8, "test feed");
    }
}
