"""Chain adapters: the only code that knows web3, solana-py and solders."""
