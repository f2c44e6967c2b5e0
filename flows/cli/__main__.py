"""`python -m flows.cli`: the same as the `pixelpipe` command."""

from flows.cli import main

if __name__ == "__main__":
    main()
