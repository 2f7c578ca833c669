"""`python -m tfstack ...`: the same as the `tfstack` command."""

from tfstack.cli import main

if __name__ == "__main__":
    main()
