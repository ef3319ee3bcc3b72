"""``streamd keys DIR [--name NAME]``: create a CURVE key pair (NAME.key public, NAME.key_secret secret)."""

from __future__ import annotations

import argparse

from streamd.path_args import path_arg
from streamd.security import create_key_pair, load_public_key

HELP = "create a CURVE key pair for authenticated publishing and listening"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=path_arg, metavar="DIR", help="where to write the key files")
    parser.add_argument("--name", default="streamd", help="file name stem (default: streamd)")
    parser.add_argument("--force", action="store_true", help="replace existing key files of that name")


def run(args: argparse.Namespace) -> int:
    public_path, secret_path = create_key_pair(args.directory, args.name, force=args.force)
    print(f"public key: {public_path}  ({load_public_key(public_path).decode()})")
    print(f"secret key: {secret_path}  (keep private; mode 0600)")
    return 0
