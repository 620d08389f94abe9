"""One module per ``egraff-lmp`` command: each has ``add_parser(subparsers)`` (its
arguments) and ``main(args)`` (parse into the stage's types, call the stage, print)."""

from . import (
    analyze,
    build_plugin,
    compare,
    compile,
    datasets,
    deploy,
    evaluate,
    examples,
    predict,
    run,
)

#: in the order of ``egraff-lmp --help``
COMMANDS = [analyze, compare, deploy, compile, predict, build_plugin, examples, run, evaluate,
            datasets]
