"""``python -m benchmarks``: time every explanation method against its lower bound."""

from benchmarks.run import main

main()
