// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {FeedStore} from "./FeedStore.sol";

/// The pull path, as a consumer would write it: the caller brings a signed report (from the feed
/// server) and the contract submits it and uses the price in the same transaction. A report that
/// is not newer than the stored one (someone pushed it first) is not an error: the stored, newer
/// round is used. The price must be at most `maxAge` seconds old either way.
contract PullConsumer {
    FeedStore public immutable store;
    bytes32 public immutable feedId;
    uint256 public immutable maxAge;

    int256 public lastPrice;
    uint80 public lastRound;

    event PriceUsed(bytes32 indexed feedId, uint80 indexed roundId, int256 price, bool submitted);

    error PriceTooOld(uint256 updatedAt, uint256 maxAge);

    constructor(FeedStore store_, bytes32 feedId_, uint256 maxAge_) {
        store = store_;
        feedId = feedId_;
        maxAge = maxAge_;
    }

    function settle(bytes calldata report, uint32 epoch, bytes calldata signature, uint8 k, uint256 y, uint256 ySqrt)
        external
        returns (int256 price, uint80 roundId)
    {
        bool submitted = store.tryUpdateWithHint(report, epoch, signature, k, y, ySqrt);
        uint256 updatedAt;
        (roundId, price,, updatedAt,) = store.latestRoundData(feedId);
        if (block.timestamp > updatedAt + maxAge) revert PriceTooOld(updatedAt, maxAge);
        lastPrice = price;
        lastRound = roundId;
        emit PriceUsed(feedId, roundId, price, submitted);
    }
}
