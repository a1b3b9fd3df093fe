"""Job logs of jobs that run as threads of one Snakemake process (core/jobs.py)."""

from __future__ import annotations

import logging
import threading

from ghga_tasks.core import jobs

log = logging.getLogger("ghga_tasks.test")


def test_a_decryption_beside_a_download_keeps_to_its_own_log(tmp_path) -> None:
    """A download job's log takes its connection threads' lines; a decryption running at
    the same time (one_thread) takes only its own, and the download's log leaves them out."""
    download_log, decrypt_log = tmp_path / "download.log", tmp_path / "decrypt.log"
    download_started, decrypt_logged = threading.Event(), threading.Event()

    def download() -> None:
        with jobs.JobLog(download_log):
            download_started.set()
            connection = threading.Thread(target=log.info, args=("range 1 done",))
            connection.start()
            connection.join()
            decrypt_logged.wait(5)
            log.info("download done")

    def decrypt() -> None:
        download_started.wait(5)
        with jobs.JobLog(decrypt_log, one_thread=True):
            log.info("decrypted and verified")
            decrypt_logged.set()

    threads = [threading.Thread(target=download), threading.Thread(target=decrypt)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert "range 1 done" in download_log.read_text()
    assert "download done" in download_log.read_text()
    assert "decrypted" not in download_log.read_text()
    assert (
        decrypt_log.read_text().count("\n") == 1
        and "decrypted and verified" in decrypt_log.read_text()
    )
    ghga_logger = logging.getLogger("ghga_tasks")
    assert ghga_logger.propagate and not ghga_logger.handlers  # put back as it was
