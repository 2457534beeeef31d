"""What the tests share: polling (`waiting`), dealt committees (`committee`), in-memory fakes of the
relay's collaborators (`fakes`), the LiteSVM harness for the Solana program (`solana`), anvil
helpers (`evm`), the feed server harness (`feeds`), the worker's test doubles (`worker`) and the
fuzz tests' budgets and seeds (`fuzzing`).

Test modules import from here, never from one another; fixtures used by several modules live in
the `conftest.py` files next to them."""
