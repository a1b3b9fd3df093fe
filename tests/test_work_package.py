"""The environment work package source: names, validation, and errors naming the variable."""

from __future__ import annotations

import base64

import pytest

from ghga_tasks.core.errors import ConfigurationError
from ghga_tasks.core.keys import parse_public_key
from ghga_tasks.core.work_package import FileSpec, work_package_from_env

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()


def env(**overrides: str) -> dict[str, str]:
    values = {
        "GHGA_DOWNLOAD_API_URL": "http://127.0.0.1:8080/ga4gh/drs/v1/",
        "GHGA_FILE_IDS": "GHGAF1,GHGAF2",
        "GHGA_FILE_EXTENSIONS": ".bam,",
        "GHGA_USER_ID": "user-1",
        "GHGA_USER_PUBLIC_KEY": KEY_B64,
        "GHGA_PUBLIC_KEY": KEY_B64,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_env_source_reads_every_variable() -> None:
    package = work_package_from_env(env(GHGA_WORK_ORDER_TOKEN="tok"))
    assert package.files == (FileSpec("GHGAF1", ".bam"), FileSpec("GHGAF2", ""))
    assert package.user_id == "user-1"
    assert package.user_public_key == KEY
    assert package.download_api_url == "http://127.0.0.1:8080/ga4gh/drs/v1"
    assert package.work_order_token == "tok"
    assert "tok" not in repr(package)  # tokens never end up in logs via repr


@pytest.mark.parametrize(
    ("extension", "file_name"),
    [
        (".bam", "GHGAF1.bam.c4gh"),  # leading dot, as GHGA sends it
        ("bam", "GHGAF1.bam.c4gh"),  # without the dot: we add it
        (".fastq.gz", "GHGAF1.fastq.gz.c4gh"),  # two components
        ("", "GHGAF1.c4gh"),  # no extension
        # Whatever GHGA derived from a submitted name gets a safe name, never an error:
        ("a/b", "GHGAF1.a_b.c4gh"),  # a separator
        ("../../x", "GHGAF1.__.__x.c4gh"),  # traversal
        (".bam\x00", "GHGAF1.bam_.c4gh"),  # NUL
        (".0 final", "GHGAF1.0_final.c4gh"),  # GHGA's suffix of "Report v1.0 final"
    ],
)
def test_output_names_follow_the_extension(extension: str, file_name: str) -> None:
    package = work_package_from_env(env(GHGA_FILE_IDS="GHGAF1", GHGA_FILE_EXTENSIONS=extension))
    assert package.files[0].file_name == file_name
    assert package.files[0].part_name == file_name + ".part"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"GHGA_FILE_IDS": None}, "GHGA_FILE_IDS"),  # missing
        ({"GHGA_FILE_EXTENSIONS": None}, "GHGA_FILE_EXTENSIONS"),  # missing
        ({"GHGA_FILE_EXTENSIONS": ".bam"}, "GHGA_FILE_EXTENSIONS"),  # 1 extension for 2 IDs
        ({"GHGA_FILE_IDS": "../x,GHGAF2"}, "GHGA_FILE_IDS"),  # path traversal
        ({"GHGA_FILE_IDS": "a/b,GHGAF2"}, "GHGA_FILE_IDS"),  # separator
        ({"GHGA_FILE_IDS": ",GHGAF2"}, "GHGA_FILE_IDS"),  # empty ID
        ({"GHGA_FILE_IDS": "GHGAF1,GHGAF1"}, "GHGA_FILE_IDS"),  # duplicate
        ({"GHGA_FILE_IDS": "..,GHGAF2"}, "GHGA_FILE_IDS"),  # dots only
        ({"GHGA_FILE_IDS": "GHGAF1.,GHGAF2"}, "GHGA_FILE_IDS"),  # "." + extension: ".."
        # Two files that would get one name (the extension's mapping made them meet):
        ({"GHGA_FILE_IDS": "A.b,A", "GHGA_FILE_EXTENSIONS": ".x,.b.x"}, "GHGA_FILE_EXTENSIONS"),
        ({"GHGA_USER_PUBLIC_KEY": "not base64!"}, "GHGA_USER_PUBLIC_KEY"),
        ({"GHGA_PUBLIC_KEY": base64.b64encode(b"short").decode()}, "GHGA_PUBLIC_KEY"),
        ({"GHGA_DOWNLOAD_API_URL": "ftp://x"}, "GHGA_DOWNLOAD_API_URL"),
        ({"GHGA_USER_ID": ""}, "GHGA_USER_ID"),
    ],
)
def test_bad_environment_names_the_variable(overrides: dict, variable: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        work_package_from_env(env(**overrides))
    assert raised.value.setting == variable
    assert str(raised.value).startswith(variable)
    assert raised.value.exit_code == 2


def test_armored_key_text_is_accepted() -> None:
    armored = f"-----BEGIN CRYPT4GH PUBLIC KEY-----\n{KEY_B64}\n-----END CRYPT4GH PUBLIC KEY-----\n"
    assert parse_public_key(armored, setting="X") == KEY
