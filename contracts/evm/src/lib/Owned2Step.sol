// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// Ownership that moves in two steps (as OpenZeppelin's Ownable2Step), shared by the Gateway and
/// the FeedStore: `transferOwnership(newOwner)` only proposes (`pendingOwner`,
/// `OwnershipTransferStarted`); the owner keeps every power until the proposed account calls
/// `acceptOwnership()`. A mistyped address therefore never takes a contract away: it cannot accept,
/// and the owner proposes again (which replaces the proposal) or cancels with
/// `transferOwnership(address(0))`. With nothing pending, `address(0)` is refused (`ZeroAddress`),
/// so a zero owner never reads as a transfer that succeeded. There is no renounce.
///
/// Storage: `owner` (slot 0 of the inheriting contract), then `pendingOwner` (slot 1, whose 12 free
/// bytes the inheriting contract's first small variable shares).
abstract contract Owned2Step {
    address public owner;
    /// The account `transferOwnership` proposed, until it accepts (0: none).
    address public pendingOwner;

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error NotPendingOwner(address caller, address pendingOwner);
    error ZeroAddress();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(address owner_) {
        if (owner_ == address(0)) revert ZeroAddress();
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
    }

    /// Proposes `newOwner` (replacing any earlier proposal); `address(0)` cancels a pending one.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0) && pendingOwner == address(0)) revert ZeroAddress();
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// The proposed owner takes over; the proposal is cleared.
    function acceptOwnership() external {
        address proposed = pendingOwner;
        if (msg.sender != proposed) revert NotPendingOwner(msg.sender, proposed);
        emit OwnershipTransferred(owner, proposed);
        owner = proposed;
        pendingOwner = address(0);
    }
}
