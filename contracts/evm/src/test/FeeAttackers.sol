// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

interface IGatewayFees {
    function send(uint32 dstDomain, bytes32 receiver, uint8 kind, bytes calldata payload)
        external
        payable
        returns (bytes32, uint64);
    function claimFees() external returns (uint256);
}

/// Test contract (forge tests only): a payer whose receive() tries to re-enter the gateway while
/// its refund is paid (another send with the refund, or a claim), and a beneficiary whose
/// receive() tries to claim a second time. Each records how many re-entries got through.
contract ReentrantPayer {
    IGatewayFees public immutable gateway;
    uint8 public mode; // 0 nothing, 1 re-enter send, 2 re-enter claimFees
    uint256 public reentrySucceeded;
    uint256 public received;

    constructor(address gateway_) {
        gateway = IGatewayFees(gateway_);
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function sendPaying(uint32 dst, uint256 value) external returns (bytes32 id) {
        (id,) = gateway.send{value: value}(dst, bytes32(uint256(1)), 4, "x");
    }

    function claim() external returns (uint256) {
        return gateway.claimFees();
    }

    receive() external payable {
        received += msg.value;
        if (mode == 1) {
            try gateway.send{value: msg.value}(1, bytes32(uint256(1)), 4, "again") {
                reentrySucceeded += 1;
            } catch {}
        } else if (mode == 2) {
            try gateway.claimFees() {
                reentrySucceeded += 1;
            } catch {}
        }
    }
}
