"""`python -m polyp_rayserve`: serve a repository through Ray Serve until SIGTERM."""

from .app import main

main()
