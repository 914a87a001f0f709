"""`python -m fbad.train` = `fbad train`: the Hydra app lives in `fbad.commands.train`."""

from fbad.commands.train import main

if __name__ == "__main__":
    main()
