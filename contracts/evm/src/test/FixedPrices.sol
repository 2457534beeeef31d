// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// Test price source (forge tests only, never deployed): FeedStore's two reads that
/// Gateway.quote uses, with prices and times the test sets. The quote's staleness and
/// missing-price checks are also tested against the real FeedStore with a committee-signed round.
contract FixedPrices {
    struct Price {
        bool registered;
        uint8 decimals;
        uint64 round;
        int256 answer;
        uint256 updatedAt;
    }

    mapping(bytes32 feedId => Price) public prices;

    function set(bytes32 feedId, uint8 decimals_, int256 answer, uint256 updatedAt) external {
        Price storage p = prices[feedId];
        p.registered = true;
        p.decimals = decimals_;
        p.round += 1;
        p.answer = answer;
        p.updatedAt = updatedAt;
    }

    function feed(bytes32 feedId) external view returns (bool, uint8, uint64, uint64) {
        Price memory p = prices[feedId];
        return (p.registered, p.decimals, p.round, uint64(p.updatedAt * 1000));
    }

    function latestRoundData(bytes32 feedId) external view returns (uint80, int256, uint256, uint256, uint80) {
        Price memory p = prices[feedId];
        return (p.round, p.answer, p.updatedAt, p.updatedAt, p.round);
    }
}
