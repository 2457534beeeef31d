// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {FeedStore} from "./FeedStore.sol";

/// One Tessera feed behind Chainlink's AggregatorV3Interface, reading a FeedStore.
///
/// Round ids are the committee's report rounds; they increase but are not consecutive (the pusher
/// skips rounds within the deviation and heartbeat), so `getRoundData` of a skipped round reverts
/// "No data present", like Chainlink for an unknown round. `answeredInRound` equals `roundId`.
contract TesseraAggregator is AggregatorV3Interface {
    uint256 public constant VERSION = 1;

    FeedStore public immutable store;
    bytes32 public immutable feedId;

    constructor(FeedStore store_, bytes32 feedId_) {
        store = store_;
        feedId = feedId_;
        store_.decimals(feedId_); // reverts UnknownFeed: register the feed first
    }

    function decimals() external view returns (uint8) {
        return store.decimals(feedId);
    }

    function description() external view returns (string memory) {
        return store.description(feedId);
    }

    function version() external pure returns (uint256) {
        return VERSION;
    }

    function getRoundData(uint80 _roundId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _round(_roundId);
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _round(store.latestRound(feedId));
    }

    function _round(uint80 roundId_)
        private
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        try store.getRound(feedId, roundId_) returns (int256 a, uint256 s, uint256 u, uint256, uint8) {
            return (roundId_, a, s, u, roundId_);
        } catch {
            revert("No data present");
        }
    }
}
