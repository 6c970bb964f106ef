"""What the tests share (imported as `helpers.<module>`; no test file imports another):

- `data`: small MNIST-format files of synthetic digits, written as the real IDX .gz files;
- `commands`: running the commands as a user does (subprocesses, or many at once in forked children),
  the overrides that make the real config train in seconds, and reading what runs wrote;
- `models`: tiny models and a brute-force likelihood, independent of the code under test;
- `real_mnist`: where the real MNIST files are, and the `slow` marker that needs them;
- `tables`: the markdown tables a command writes, checked as a renderer reads them;
- `run_commands.py`, `instrumented_train.py`: scripts the tests start as processes.
"""
