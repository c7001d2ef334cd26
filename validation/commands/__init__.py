"""Sub-commands of ``tumblebench``: one module each, registered in the order listed here.

Each module defines ``add_parser(subparsers) -> None`` which adds its sub-parser and sets
``func(args) -> int`` via ``set_defaults``.
"""

COMMANDS: list[str] = [
    "build",
    "simulate",
    "atoms",
    "atoms_compare",
    "reconstruct",
    "score",
    "report",
    "demo",
    "bench",
    "regress",
    "study",
    "dataset",
]
