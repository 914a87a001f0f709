"""`python -m fbad.publish` = `fbad publish`: the Hydra app lives in `fbad.commands.publish`."""

from fbad.commands.publish import main

if __name__ == "__main__":
    main()
