"""Every bad model file gets one clear ElmoFileError naming the file and the problem."""

import json

import h5py
import numpy as np
import pytest
import torch

from elmo_core import ElmoFileError, load_bilm
from tasks.cli import main


def test_missing_weight_file(tiny_model, tmp_path):
    with pytest.raises(ElmoFileError, match="weight file not found"):
        load_bilm(options=tiny_model[0], weights=tmp_path / "nope.hdf5")


def test_missing_options_file(tiny_model, tmp_path):
    with pytest.raises(ElmoFileError, match="options file not found"):
        load_bilm(options=tmp_path / "nope.json", weights=tiny_model[1])


def test_not_an_hdf5_file(tiny_model, tmp_path):
    fake = tmp_path / "fake.hdf5"
    fake.write_text("this is text, not HDF5")
    with pytest.raises(ElmoFileError, match="not an HDF5 file"):
        load_bilm(options=tiny_model[0], weights=fake)


def test_truncated_hdf5_file(tiny_model, tmp_path):
    data = tiny_model[1].read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ElmoFileError, match="truncated|damaged"):
        load_bilm(options=tiny_model[0], weights=cut)


def test_missing_dataset_is_named(tiny_model, tmp_path):
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(tiny_model[1].read_bytes())
    with h5py.File(broken, "a") as handle:
        del handle["CNN_high_0/W_carry"]
    with pytest.raises(ElmoFileError, match="'CNN_high_0/W_carry' is missing"):
        load_bilm(options=tiny_model[0], weights=broken)


def test_shape_disagreeing_with_options_names_key_expected_and_found(tiny_model, tmp_path):
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(tiny_model[1].read_bytes())
    with h5py.File(broken, "a") as handle:
        del handle["CNN_proj/b_proj"]
        handle["CNN_proj/b_proj"] = np.zeros(7, np.float32)
    with pytest.raises(ElmoFileError, match=r"'CNN_proj/b_proj' has shape \(7,\), expected \(8,\)"):
        load_bilm(options=tiny_model[0], weights=broken)


def test_options_missing_a_field_names_it(tiny_model, tmp_path):
    tree = json.loads(tiny_model[0].read_text())
    del tree["lstm"]["projection_dim"]
    bad = tmp_path / "options.json"
    bad.write_text(json.dumps(tree))
    with pytest.raises(ElmoFileError, match="no field 'lstm.projection_dim'"):
        load_bilm(options=bad, weights=tiny_model[1])


def test_options_not_json(tiny_model, tmp_path):
    bad = tmp_path / "options.json"
    bad.write_text("{lstm: ")
    with pytest.raises(ElmoFileError, match="not a valid JSON"):
        load_bilm(options=bad, weights=tiny_model[1])


def run_embed(tiny_model, tmp_path, content: bytes, capsys):
    text = tmp_path / "in.txt"
    text.write_bytes(content)
    code = main(
        [
            "embed",
            "--options",
            str(tiny_model[0]),
            "--weights",
            str(tiny_model[1]),
            "--input",
            str(text),
            "--output",
            str(tmp_path / "out.hdf5"),
            "--quiet",
        ]
    )
    return code, capsys.readouterr().err, text


def test_embed_empty_sentence_reports_file_and_line(tiny_model, tmp_path, capsys):
    code, err, text = run_embed(tiny_model, tmp_path, b"a b\n\nc\n", capsys)
    assert code == 2 and f"{text}:2: empty sentence" in err and "Traceback" not in err
    assert not (tmp_path / "out.hdf5").exists()


def test_embed_empty_file(tiny_model, tmp_path, capsys):
    code, err, text = run_embed(tiny_model, tmp_path, b"", capsys)
    assert code == 2 and "the file is empty" in err


def test_embed_non_utf8_line_reports_file_and_line(tiny_model, tmp_path, capsys):
    code, err, text = run_embed(tiny_model, tmp_path, b"ok line\nbad \xff byte\n", capsys)
    assert code == 2 and f"{text}:2: not valid UTF-8" in err


def test_embed_missing_input_file(tiny_model, tmp_path, capsys):
    code = main(
        [
            "embed",
            "--options",
            str(tiny_model[0]),
            "--weights",
            str(tiny_model[1]),
            "--input",
            str(tmp_path / "none.txt"),
            "--output",
            str(tmp_path / "o.hdf5"),
        ]
    )
    assert code == 2 and "input file not found" in capsys.readouterr().err


def test_embed_bad_weights_through_cli_is_one_line_not_a_traceback(tiny_model, tmp_path, capsys):
    fake = tmp_path / "fake.hdf5"
    fake.write_text("nope")
    (tmp_path / "in.txt").write_text("a b\n")
    code = main(
        [
            "embed",
            "--options",
            str(tiny_model[0]),
            "--weights",
            str(fake),
            "--input",
            str(tmp_path / "in.txt"),
            "--output",
            str(tmp_path / "o.hdf5"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not an HDF5 file" in err and "Traceback" not in err


def test_embed_default_mode_output_matches_api(tiny_model, tmp_path):
    import torch

    from elmo_core import batch_to_ids

    lines = ["a b c", "the dog let out a sharp bark", "x"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "embed",
                "--options",
                str(tiny_model[0]),
                "--weights",
                str(tiny_model[1]),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(tmp_path / "o.hdf5"),
                "--batch-size",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    with h5py.File(tmp_path / "o.hdf5", "r") as handle:
        for i, line in enumerate(lines):
            with torch.no_grad():
                expected = bilm(batch_to_ids([line.split()])).layers[:, 0].numpy()
            assert np.abs(handle[str(i)][...] - expected).max() <= 1e-6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error_before_reading_the_model(tmp_path):
    from elmo_core.loading import load_bilm

    with pytest.raises(ValueError, match=r"device 'cuda'.*(CPU-only build|no CUDA GPU).*--device cpu"):
        load_bilm(options=tmp_path / "absent.json", weights=tmp_path / "absent.hdf5", device="cuda")


def test_an_unknown_device_is_named(tmp_path):
    from elmo_core.loading import load_bilm

    with pytest.raises(ValueError, match="device 'tpu': expected cpu, cuda or cuda:N"):
        load_bilm(options=tmp_path / "absent.json", weights=tmp_path / "absent.hdf5", device="tpu")
