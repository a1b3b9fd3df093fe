"""ghga-tasks: bulk download of controlled-access GHGA files.

Layers (imports flow one way):
    ghga_tasks.core      pure Python: work package, Download API client, plan, download,
                         and the jobs the Snakemake rules run in-process (core.jobs)
    ghga_tasks.sandbox   a local GHGA-compatible server for tests and the demo
    ghga_tasks.cli       the click command line; its `step` commands are the rules' jobs
                         as processes of their own (downloads_on_cluster)
"""

__version__ = "0.1.0"
