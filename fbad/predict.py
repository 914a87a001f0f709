"""`python -m fbad.predict` = `fbad predict`: the Hydra app lives in `fbad.commands.predict`."""

from fbad.commands.predict import main

if __name__ == "__main__":
    main()
