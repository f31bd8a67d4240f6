"""The command line's main job, end to end on small settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from skggda.cli import main


def test_main_job_prints_a_readable_table(capsys):
    assert main(["--quiet", "--epochs", "5", "--group-sizes", "1", "8"]) == 0
    out = capsys.readouterr().out
    assert "TracIn group attribution on breast_cancer" in out
    assert "noisy-label AUC" in out
    lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in lines[:2]] == ["1", "8"]
    assert int(lines[0][1]) == 455 and int(lines[1][1]) == 57
    assert "most harmful training points" in out


def test_digits_multiclass(capsys):
    assert main(["--quiet", "--dataset", "digits", "--epochs", "3", "--group-sizes", "32"]) == 0
    assert "on digits" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--noise", "1.5"], "--noise must be in [0, 1)"),
    (["--group-sizes", "0"], "--group-sizes must be positive"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
])
def test_bad_options_exit_with_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "skggda", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("skggda ")
