"""Writing instance sets never deletes what eplbench did not write: `instances generate` and
`instances import --out DIR` refuse a non-empty folder that is not a set (unless --force),
replace only a set's own files, keep a reference.json that still matches and refuse one that
no longer does, and leave the old set whole when a write fails."""

from fractions import Fraction

import pytest
from click.testing import CliRunner

from eplbench.cli import main
from eplbench.errors import BadInput
from eplbench.instances import load_set, save_set
from eplbench.instances import store
from eplbench.reference import ReferenceEntry, read_reference, write_reference

NOTES = "my notes: do not lose\n"


def generate(out, *extra, seed=0):
    """`eplbench instances generate` of two small uniform instances into `out`."""
    return CliRunner().invoke(main, ["instances", "generate", "--family", "uniform", "--count",
                                     "2", "--seed", str(seed), "--out", str(out), *extra])


def uniform_set(seed=0):
    from eplbench.instances import Instance
    from eplbench.instances.families import generate as draw
    from eplbench.problem import Topology

    topology = Topology(20, 4, 2, 4)
    return [Instance(id=f"uniform/{seed + index:06d}", weight=draw("uniform", seed + index, 4, 16),
                     topology=topology, family="uniform", seed=seed + index)
            for index in range(2)]


def write_matching_reference(folder):
    """A reference.json whose entries name the hashes of the set now in `folder`."""
    entries = [ReferenceEntry(instance.id, instance.content_hash, 0, "global", Fraction(3, 2),
                              Fraction(1), "test@here", "test@here")
               for instance in load_set(folder)]
    return write_reference(folder / "reference.json", entries)


def listing(folder):
    return sorted(path.name for path in folder.iterdir())


def test_generate_refuses_a_folder_holding_other_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text(NOTES)
    result = generate(out)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1
    assert str(out) in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.output
    assert listing(out) == ["notes.txt"] and (out / "notes.txt").read_text() == NOTES
    assert listing(tmp_path) == ["out"]


def test_generate_with_force_writes_the_set_beside_other_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text(NOTES)
    result = generate(out, "--force")
    assert result.exit_code == 0, result.output
    assert [i.content_hash for i in load_set(out)] == [i.content_hash for i in uniform_set()]
    assert (out / "notes.txt").read_text() == NOTES
    assert listing(out) == ["loads.npz", "manifest.json", "notes.txt"]
    assert listing(tmp_path) == ["out"]


def test_import_refuses_a_folder_holding_other_files_unless_forced(tmp_path):
    import numpy as np

    dump = tmp_path / "dump.npy"
    np.save(dump, uniform_set()[0].weight)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text(NOTES)
    command = ["instances", "import", str(dump), "--topology", "20,4,2,4", "--out", str(out)]
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 2 and len(refused.stderr.splitlines()) == 1
    assert "--force" in refused.stderr and listing(out) == ["notes.txt"]
    forced = CliRunner().invoke(main, command + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert len(load_set(out)) == 1 and (out / "notes.txt").read_text() == NOTES


def test_an_empty_folder_or_a_new_one_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert generate(out).exit_code == 0
        assert len(load_set(out)) == 2 and listing(out) == ["loads.npz", "manifest.json"]
    assert listing(tmp_path) == ["empty", "new"] and listing(tmp_path / "new") == ["deeper"]


def test_another_programs_manifest_does_not_make_a_set_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my-extension", "version": "1.0"}\n')
    assert generate(out).exit_code == 2
    assert (out / "manifest.json").read_text() == '{"name": "my-extension", "version": "1.0"}\n'


def test_regenerating_a_set_keeps_its_files_and_a_matching_reference(tmp_path):
    out = tmp_path / "out"
    assert generate(out).exit_code == 0
    reference = write_matching_reference(out)
    (out / "notes.txt").write_text(NOTES)
    before = reference.read_bytes()
    result = generate(out)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert reference.read_bytes() == before and (out / "notes.txt").read_text() == NOTES
    assert listing(out) == ["loads.npz", "manifest.json", "notes.txt", "reference.json"]
    assert len(load_set(out)) == 2


def test_a_different_set_over_a_reference_is_refused_and_forced_with_a_warning(tmp_path):
    out = tmp_path / "out"
    assert generate(out).exit_code == 0
    reference = write_matching_reference(out)
    old = {i.content_hash for i in load_set(out)}
    before = reference.read_bytes()
    refused = generate(out, seed=7)
    assert refused.exit_code == 2, refused.output
    assert len(refused.stderr.splitlines()) == 1
    assert str(reference) in refused.stderr and "2 of 2 entries" in refused.stderr
    assert "--force" in refused.stderr
    assert reference.read_bytes() == before and {i.content_hash for i in load_set(out)} == old

    forced = generate(out, "--force", seed=7)
    assert forced.exit_code == 0, forced.output
    assert "warning" in forced.stderr and "2 of 2 entries" in forced.stderr
    assert reference.read_bytes() == before
    assert {i.content_hash for i in load_set(out)} == {i.content_hash for i in uniform_set(7)}


def test_save_set_refuses_and_warns_like_the_command(tmp_path):
    folder = save_set(tmp_path / "set", "uniform", uniform_set())
    write_matching_reference(folder)
    with pytest.raises(BadInput, match=r"reference\.json: 2 of 2 entries no longer match"):
        save_set(folder, "uniform", uniform_set(7))
    with pytest.warns(UserWarning, match="2 of 2 entries no longer match"):
        save_set(folder, "uniform", uniform_set(7), force=True)
    assert len(read_reference(folder / "reference.json")) == 2

    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2\n")
    with pytest.raises(BadInput, match="not an instance set .*--force"):
        save_set(other, "uniform", uniform_set())
    save_set(other, "uniform", uniform_set(), force=True)
    assert len(load_set(other)) == 2 and (other / "data.csv").read_text() == "1,2\n"


def failing_npz_writer(path, arrays):
    with open(path, "wb") as handle:
        handle.write(b"PK half an archive")
    raise OSError("disk full")


def test_a_failed_write_leaves_the_old_set_and_no_temporaries(tmp_path, monkeypatch):
    folder = save_set(tmp_path / "set", "uniform", uniform_set())
    (folder / "notes.txt").write_text(NOTES)
    before = {name: (folder / name).read_bytes() for name in listing(folder)}
    monkeypatch.setattr(store, "_write_npz", failing_npz_writer)
    with pytest.raises(OSError, match="disk full"):
        save_set(folder, "uniform", uniform_set(7))
    assert {name: (folder / name).read_bytes() for name in listing(folder)} == before
    assert [i.id for i in load_set(folder)] == [i.id for i in uniform_set()]
    assert listing(tmp_path) == ["set"]

    with pytest.raises(OSError, match="disk full"):  # a new folder: nothing at all is left
        save_set(tmp_path / "new", "uniform", uniform_set())
    assert listing(tmp_path) == ["set"]


def test_out_dot_in_a_working_directory_with_files_is_refused(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text(NOTES)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["instances", "generate", "--set", "tiny", "--out", "."])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and "--force" in result.stderr
    assert listing(tmp_path) == ["notes.txt", "src"]
    assert (tmp_path / "notes.txt").read_text() == NOTES
    assert (tmp_path / "src" / "main.py").read_text() == "print('hi')\n"
