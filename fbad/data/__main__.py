"""`python -m fbad.data` = `fbad data`: the Hydra app lives in `fbad.commands.data`."""

from fbad.commands.data import main

if __name__ == "__main__":
    main()
