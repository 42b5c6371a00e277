"""lab.run_folder: the claim of a study's folder and its CSV rows, which `bench`, `choose` and
`stop-study` resume from."""
import hashlib

import pytest

from ganprior_core.lab import run_folder

COLUMNS = ("name", "score")


def test_the_first_run_claims_the_folder_and_a_run_with_other_settings_is_refused(tmp_path):
    def claim(settings):
        run_folder.claim(tmp_path, settings, "run.json", "a study", has_results=lambda: True,
                         later_keys=("added",))

    claim({"preset": "paper", "until": 10})
    claimed = (tmp_path / "run.json").read_bytes()
    claim({"preset": "paper", "until": 10})  # the same settings: resumes
    claim({"preset": "paper", "until": 10, "added": 1})  # a key the old claim predates
    with pytest.raises(ValueError, match=r"holds a study with other settings \(differs in: preset, until\)"):
        claim({"preset": "single-z", "until": 20})
    assert (tmp_path / "run.json").read_bytes() == claimed


def test_an_unreadable_claim_is_replaced_only_where_no_result_depends_on_it(tmp_path):
    (tmp_path / "run.json").write_text("")  # a disk that filled up under an older version
    with pytest.raises(ValueError, match="run.json is unreadable"):
        run_folder.claim(tmp_path, {"a": 1}, "run.json", "a study", has_results=lambda: True)
    run_folder.claim(tmp_path, {"a": 1}, "run.json", "a study", has_results=lambda: False)
    assert (tmp_path / "run.json").read_text() == '{\n  "a": 1\n}\n'


def test_rows_cut_short_or_with_cells_missing_are_dropped_and_repaired(tmp_path):
    path = tmp_path / "rows.csv"
    run_folder.write_rows(path, COLUMNS, [{"name": "a", "score": "1"}, {"name": "b", "score": "2"}])
    whole = path.read_text()
    path.write_text(whole + "c,3,extra\r\nd\r\ne,4")  # extra cell, missing cell, cut last line
    assert run_folder.read_rows(path, COLUMNS) == [{"name": "a", "score": "1"}, {"name": "b", "score": "2"}]
    assert path.read_text().startswith(whole)  # without repair nothing is rewritten
    assert [row["name"] for row in run_folder.read_rows(path, COLUMNS, repair=True)] == ["a", "b"]
    assert path.read_text() == whole


def test_a_row_parse_refuses_counts_as_unfinished(tmp_path):
    path = tmp_path / "rows.csv"
    run_folder.write_rows(path, COLUMNS, [{"name": "a", "score": ""}, {"name": "b", "score": "2"}])
    parsed = run_folder.read_rows(path, COLUMNS, lambda row: (row["name"], float(row["score"])))
    assert parsed == [("b", 2.0)]


def test_appending_keeps_every_earlier_row_and_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "rows.csv"
    assert run_folder.read_rows(path, COLUMNS) == []
    for name in "abc":
        run_folder.append_row(path, COLUMNS, {"name": name, "score": 1})
    assert [row["name"] for row in run_folder.read_rows(path, COLUMNS)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="has columns"):
        run_folder.read_rows(path, ("name", "other"))


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "prior.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert run_folder.file_digest(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
