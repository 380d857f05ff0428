"""``python -m ctir_es.cli`` - same as the ``ctir-es`` console script."""

from .main import main

main()
