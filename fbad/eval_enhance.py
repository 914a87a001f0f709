"""`python -m fbad.eval_enhance` = `fbad eval-enhance`: the Hydra app lives in `fbad.commands.eval_enhance`."""

from fbad.commands.eval_enhance import main

if __name__ == "__main__":
    main()
