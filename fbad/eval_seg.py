"""`python -m fbad.eval_seg` = `fbad eval-seg`: the Hydra app lives in `fbad.commands.eval_seg`."""

from fbad.commands.eval_seg import main

if __name__ == "__main__":
    main()
