"""One module per `kbackup` subcommand; each exposes `register(subparsers)`.

A subcommand's handler takes the parsed arguments and returns the process exit code:
0 success, 1 a failed run, 2 bad input.
"""
