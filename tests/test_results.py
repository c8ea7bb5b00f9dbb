"""Result files: tables written by a script, rendered into docs, read back by notebooks."""

from __future__ import annotations

from course_lib.studies.results import (
    BenchmarkRun,
    Table,
    load_average,
    load_result,
    machine,
    markdown_table,
    marked_blocks,
    render_markdown,
    write_result,
)

import json

import pytest

TIMES = Table(
    columns=[("method", ""), ("ms/step", ".2f"), ("ratio", ".2f×"), ("share", ".1%"), ("n", ",")],
    rows=[["SGD", 1.234, 1.0, 0.5, 1200], ["Heun", 2.5, 2.026, 0.25, None]],
)


def _write(tmp_path, table=TIMES):
    return write_result(
        "timing",
        script="benchmarks/x.py",
        command="python benchmarks/x.py",
        machine="2-core test",
        tables={"steps": table},
        values={"seeds": 3},
        directory=tmp_path,
    )


def test_a_pipe_inside_a_cell_or_header_does_not_split_its_column():
    # The harness table's header "largest |mean| / δ": unescaped, its row has more cells than
    # the separator and the table does not render at all.
    table = Table(columns=[("regime", ""), ("largest |mean|", ".2g")], rows=[["a|b", 0.5]])
    header, separator, row = markdown_table(table).splitlines()
    for line in (header, row):
        unescaped = line.replace("\\|", "")
        assert unescaped.count("|") == separator.count("|"), line
    assert header == "| regime | largest \\|mean\\| |" and row == "| a\\|b | 0.5 |"


def test_a_table_renders_each_column_in_its_format():
    assert markdown_table(TIMES) == (
        "| method | ms/step | ratio | share | n |\n"
        "|---|---|---|---|---|\n"
        "| SGD | 1.23 | 1.00× | 50.0% | 1,200 |\n"
        "| Heun | 2.50 | 2.03× | 25.0% |  |\n"
    )


def test_a_written_result_reads_back_with_raw_values(tmp_path):
    path = _write(tmp_path)
    assert json.loads(path.read_text())["tables"]["steps"]["rows"][0] == [
        "SGD",
        1.234,
        1.0,
        0.5,
        1200,
    ]
    result = load_result("timing", tmp_path)
    assert result.values == {"seeds": 3}
    assert result.table("steps").column("ms/step") == [1.234, 2.5]
    assert result.table("steps").records()[1]["method"] == "Heun"
    with pytest.raises(KeyError, match="has no table 'memory'"):
        result.table("memory")
    with pytest.raises(KeyError, match="no column 'ms'"):
        result.table("steps").column("ms")


def test_marked_blocks_are_rewritten_from_their_file(tmp_path):
    _write(tmp_path)
    text = "# Doc\n\n<!-- result: timing steps -->\n| old | table |\n<!-- /result -->\n\nafter\n"
    rendered = render_markdown(text, tmp_path)
    assert rendered == (
        "# Doc\n\n<!-- result: timing steps -->\n"
        + markdown_table(TIMES)
        + "<!-- /result -->\n\nafter\n"
    )
    assert [(n, t) for n, t, _ in marked_blocks(rendered)] == [("timing", "steps")]
    assert render_markdown(rendered, tmp_path) == rendered


def test_a_missing_file_or_a_ragged_table_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result file nothing.json.*run the benchmark"):
        load_result("nothing", tmp_path)
    with pytest.raises(ValueError, match="row 0 has 1 values but the table has 2 columns"):
        Table(columns=[("a", ""), ("b", "")], rows=[[1]])
    with pytest.raises(ValueError, match="lower-case"):
        write_result("Bad Name", script="", command="", machine="", tables={}, directory=tmp_path)


def test_a_script_renders_only_its_own_tables(tmp_path):
    _write(tmp_path)
    text = (
        "<!-- result: timing steps -->\nold\n<!-- /result -->\n"
        "<!-- result: other steps -->\nuntouched\n<!-- /result -->\n"
    )
    rendered = render_markdown(text, tmp_path, names=["timing"])
    assert markdown_table(TIMES) in rendered
    assert "untouched" in rendered  # no other.json needed


def test_the_machine_line_names_the_cpu_threads_and_versions():
    line = machine()
    assert "CPU threads" in line and "keras 3." in line
    assert load_average() is None or load_average() >= 0


def test_a_benchmark_run_records_its_time_and_load_and_renders_its_docs(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("<!-- result: timing steps -->\nold\n<!-- /result -->\n")
    run = BenchmarkRun(
        "timing", "benchmarks/x.py", "python benchmarks/x.py --fast", directory=tmp_path, docs=[doc]
    )
    run.write({"steps": TIMES}, {"seeds": 3})
    result = load_result("timing", tmp_path)
    assert result.command == "python benchmarks/x.py --fast"
    assert result.machine == machine()
    assert result.values["seeds"] == 3 and result.values["seconds"] >= 0
    assert {"load_average_before", "load_average_after"} <= set(result.values)
    assert markdown_table(TIMES) in doc.read_text()
