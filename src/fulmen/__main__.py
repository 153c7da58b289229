"""``python -m fulmen`` and the ``fulmen`` console script."""

from fulmen.cli import main

if __name__ == "__main__":
    main()
