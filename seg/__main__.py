"""`python -m seg ...` (used by `torchrun --nproc-per-node N -m seg train ...`)."""

from seg.cli import main

if __name__ == "__main__":
    main()
