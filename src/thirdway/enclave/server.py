"""Entry point of the enclave process: ``python -I -m thirdway.enclave.server``.

Kept tiny on purpose: it installs the measuring import hook first, so that every other thirdway
module the enclave runs is compiled from the very source bytes its measurement hashes, then
hands over to :mod:`thirdway.enclave.service`. The process speaks frames on stdin/stdout only.
"""

from __future__ import annotations

import sys

from thirdway.enclave import measure


def main() -> int:
    """Run one enclave until the gateway closes its stdin; the exit status says how it ended."""
    finder = measure.install_finder()
    from thirdway.enclave import service  # through the hook: measured

    return service.run(finder)


if __name__ == "__main__":
    sys.exit(main())
