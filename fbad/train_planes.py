"""`python -m fbad.train_planes` = `fbad train-planes`: the Hydra app lives in `fbad.commands.train_planes`."""

from fbad.commands.train_planes import main

if __name__ == "__main__":
    main()
