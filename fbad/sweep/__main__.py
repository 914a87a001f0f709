"""`python -m fbad.sweep` = `fbad sweep`: the Hydra app lives in `fbad.commands.sweep`."""

from fbad.commands.sweep import main

if __name__ == "__main__":
    main()
