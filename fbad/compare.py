"""`python -m fbad.compare` = `fbad compare`: the Hydra app lives in `fbad.commands.compare`."""

from fbad.commands.compare import main

if __name__ == "__main__":
    main()
