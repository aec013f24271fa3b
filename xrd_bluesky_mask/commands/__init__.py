"""One module per ``xrd-mask`` sub-command.

Each module defines ``add_parser(subparsers)`` (returns its parser) and ``run(args, argv) -> int``
(the exit code). The CLI discovers the modules here, so a new command is a new file.
"""
