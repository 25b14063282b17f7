"""TFDS builders: round trips through array_record, generated datasets."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reasoning_gym
import tensorflow_datasets as tfds

from bnll_jax.data import builders, sources
from bnll_jax.data.config import DataConfig

tfds.disable_progress_bar()

ROWS = [
    {
        "id": i,
        "extra_info": {"question": f"What is {i} + {i}?", "answer": str(2 * i)},
        "messages": [
            {"role": "user", "content": f"Say {i}."},
            {"role": "assistant", "content": f"{i}."},
        ],
    }
    for i in range(7)
]


def _rows_of(config: DataConfig) -> dict[int, dict]:
    source = builders.open_rows(config)
    return dict(source[i] for i in range(len(source)))


def _write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_generic_builder_round_trips_nested_rows(tmp_path, suffix):
    path = str(tmp_path / f"rows.{suffix}")
    if suffix == "jsonl":
        _write_jsonl(path, ROWS)
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    config = DataConfig(
        dataset="generic", path=path, data_dir=str(tmp_path / "tfds")
    )
    assert _rows_of(config) == dict(enumerate(ROWS))
    # Written once as array_record, then readable by name without TF.
    built = builders.load_builder(config)
    files = os.listdir(built.data_dir)
    assert any(".array_record" in f for f in files)
    named = tfds.data_source(
        f"bnll_generic/{built.builder_config.name}",
        data_dir=str(tmp_path / "tfds"),
    )
    assert len(named["train"]) == len(ROWS)


def test_math_builder_reads_split_directory(tmp_path):
    folder = tmp_path / "math"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS[:5]), folder / "train.parquet")
    _write_jsonl(folder / "val.jsonl", ROWS[5:])
    data_dir = str(tmp_path / "tfds")
    train = _rows_of(
        DataConfig(dataset="math", path=str(folder), data_dir=data_dir)
    )
    val = _rows_of(
        DataConfig(
            dataset="math", path=str(folder), data_dir=data_dir, split="val"
        )
    )
    assert train == dict(enumerate(ROWS[:5]))
    assert val == dict(enumerate(ROWS[5:]))


def test_saved_hugging_face_dataset_is_read(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    table = pa.Table.from_pylist(ROWS)
    # The layout `datasets.Dataset.save_to_disk` writes: an Arrow stream
    # and a state file naming it.
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as f:
        with pa.ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}
    (folder / "state.json").write_text(json.dumps(state))
    assert sources.split_files(str(folder)) == {
        "train": [str(folder / "data-00000-of-00001.arrow")]
    }
    rows = list(sources.read_rows(str(folder / "data-00000-of-00001.arrow")))
    assert rows == ROWS


def test_unreadable_files_raise_naming_the_file(tmp_path):
    fake = tmp_path / "rows.parquet"
    fake.write_text("this is not parquet")
    with pytest.raises(ValueError, match="rows.parquet"):
        list(sources.read_rows(str(fake)))

    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2 is not valid JSON"):
        list(sources.read_rows(str(broken)))

    with pytest.raises(ValueError, match="neither a file nor a directory"):
        sources.split_files(str(tmp_path / "absent"))


def test_missing_split_names_the_choices(tmp_path):
    path = str(tmp_path / "rows.jsonl")
    _write_jsonl(path, ROWS)
    config = DataConfig(
        dataset="generic",
        path=path,
        data_dir=str(tmp_path / "tfds"),
        split="test",
    )
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train'\]"):
        builders.open_rows(config)


@pytest.mark.parametrize("dataset", ["figfont", "gsm_symbolic"])
def test_generated_datasets_are_deterministic(tmp_path, dataset):
    def build(data_dir, split):
        return _rows_of(
            DataConfig(
                dataset=dataset,
                data_dir=str(data_dir),
                num_generated=(12, 3),
                split=split,
            )
        )

    first = build(tmp_path / "a", "train")
    again = build(tmp_path / "b", "train")
    test = build(tmp_path / "a", "test")
    assert first == again
    assert sorted(first) == list(range(12))
    assert sorted(test) == [12, 13, 14]

    # The rows are reasoning-gym's own items at the paper's seed.
    builder = builders.BUILDERS[dataset]
    reference = reasoning_gym.create_dataset(
        builder.TASK, seed=42, size=15, **builder.TASK_KWARGS
    )
    assert first[3] == json.loads(json.dumps(reference[3]))
    assert test[13]["question"] == reference[13]["question"]


def test_figfont_uses_paper_settings_by_default():
    config = builders.builder_config_for(DataConfig(dataset="figfont"))
    assert config is builders.BnllFigfont.BUILDER_CONFIGS[0]
    assert (config.seed, config.num_train, config.num_test) == (
        42,
        40_000,
        5_000,
    )
    assert builders.BnllFigfont.TASK_KWARGS == {
        "min_word_len": 2,
        "max_word_len": 5,
        "space_letters": True,
    }


def test_unreachable_hub_dataset_is_a_clear_error(tmp_path):
    config = DataConfig(
        dataset="math",
        path="bnll-tests/absent-dataset",
        data_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match="could not fetch hub dataset"):
        builders.open_rows(config)
