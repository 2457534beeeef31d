// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// What a contract implements to receive Tessera messages from a Gateway.
///
/// The gateway calls `handleMessage` once per message id, after the committee's signature has been
/// checked. A revert here does not lose the message: the gateway records it as failed and anyone can
/// re-run it with `Gateway.retryFailed(envelope)`. Receivers must check `msg.sender` is their gateway.
interface ITesseraReceiver {
    function handleMessage(
        bytes32 messageId,
        uint32 srcDomain,
        bytes32 srcSender,
        uint8 kind,
        uint64 nonce,
        bytes calldata payload
    ) external;
}
