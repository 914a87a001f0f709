"""`python -m fbad.train_seg` = `fbad train-seg`: the Hydra app lives in `fbad.commands.train_seg`."""

from fbad.commands.train_seg import main

if __name__ == "__main__":
    main()
