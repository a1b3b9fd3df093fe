"""ghga-tasks: bulk download of controlled-access GHGA files.

Layers (imports flow one way):
    ghga_tasks.core      pure Python: work package, Download API client, plan, download
    ghga_tasks.sandbox   a local GHGA-compatible server for tests and the demo
    ghga_tasks.cli       the click command line; also what the Snakemake rules call
"""

__version__ = "0.1.0"
