"""`python -m fbad.export` = `fbad export`: the Hydra app lives in `fbad.commands.export`."""

from fbad.commands.export import main

if __name__ == "__main__":
    main()
