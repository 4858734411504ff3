"""The command line as a BIDS App user meets it: help, version, usage errors and exit codes."""
import json
import re

import pytest

from conftest import REPO, run_cli
from gado_bids.cli.parser import build_parser
from gado_bids.errors import ExitCode

OPTIONS = ["--participant_label", "--session_label", "--ce_label", "--bids_filter_file",
           "--skip_bids_validator", "--model", "--weights", "--device", "--nthreads", "--seed", "--work_dir",
           "--keep_work", "--overwrite", "--version"]


def test_help_lists_every_option_and_the_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: run.py bids_dir output_dir {participant,group}")
    for option in OPTIONS:
        assert option in result.stdout
    assert "64 usage error" in result.stdout and "Bottani" in result.stdout


def test_version_prints_the_version_file():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"gadosynth {(REPO / 'version').read_text().strip()}"


@pytest.mark.parametrize("arguments, message", [
    ([], "the following arguments are required"),
    (["in", "out", "subject"], "invalid choice: 'subject'"),
    (["in", "out", "participant", "--device", "gpu"], "'gpu' is not a device"),
    (["in", "out", "participant", "--participant_label", "01_a"], "not a BIDS label"),
    (["in", "out", "participant", "--session_label", "ses-0 1"], "not a BIDS label"),
    (["in", "out", "participant", "--nthreads", "0"], "must be a whole number >= 1"),
    (["in", "out", "participant", "--seed", "-3"], "must be a whole number in"),
    (["in", "out", "participant", "--no-such-option"], "unrecognized arguments"),
])
def test_usage_errors_exit_64_with_a_message(arguments, message):
    result = run_cli(*arguments)
    assert result.returncode == ExitCode.USAGE
    assert message in result.stderr


def test_labels_accept_the_prefix_or_not():
    parser = build_parser()
    args = parser.parse_args(["b", "o", "participant", "--participant_label", "sub-01", "02",
                              "--session_label", "ses-pre", "post"])
    assert args.participant_label == ["01", "02"]
    assert args.session_label == ["pre", "post"]


def test_defaults_are_documented_values():
    args = build_parser().parse_args(["b", "o", "group"])
    assert (args.device, args.seed, args.ce_label, args.overwrite) == ("auto", 42, "gadolinium",
                                                                       False)


def test_the_workflows_get_a_typed_run_configuration_of_every_option():
    """Every option the parser defines is a RunConfig field and back: a new option cannot be
    forgotten on the way to the workflows, nor a field read that no option sets."""
    import dataclasses
    from gado_bids.cli.main import run_config
    from gado_bids.workflows.config import RunConfig
    parser = build_parser()
    options = {a.dest for a in parser._actions if a.dest not in ("help", "version")}
    assert options == {f.name for f in dataclasses.fields(RunConfig)}
    config = run_config(parser.parse_args(["b", "o", "participant", "--n_procs", "2"]))
    assert isinstance(config, RunConfig) and config.n_procs == 2 and config.seed == 42
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1


def test_boutiques_descriptor_matches_the_parser():
    descriptor = json.loads((REPO / "gado_bids" / "resources" / "boutiques.json").read_text())
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "version")}
    inputs = {i["id"]: i for i in descriptor["inputs"]}
    assert set(inputs) == set(actions)
    for dest, action in actions.items():
        if action.option_strings:
            assert inputs[dest]["command-line-flag"] == action.option_strings[0]
            assert inputs[dest]["optional"] is True
        else:
            assert inputs[dest]["optional"] is False
        if action.choices:
            assert inputs[dest]["value-choices"] == list(action.choices)
        assert inputs[dest]["value-key"] in descriptor["command-line"]
    assert descriptor["tool-version"] == (REPO / "version").read_text().strip()
    positional = [a.dest for a in parser._actions if not a.option_strings and a.dest != "help"]
    order = descriptor["command-line"].split()
    assert order[1:4] == [f"[{p.upper()}]" for p in positional]


def test_boutiques_descriptor_is_valid():
    from boutiques import bosh
    assert bosh(["validate", str(REPO / "gado_bids" / "resources" / "boutiques.json")]) is None


def test_readme_options_table_states_the_parser_defaults():
    """The README's usage table is what users read; a default it states must be the real one."""
    parser = build_parser()
    stated = {}
    for line in (REPO / "README.md").read_text().splitlines():
        row = re.match(r"\| `(--\w+)[^`]*` \|(.*)\|$", line)
        if not row:
            continue
        value = re.search(r"default (`[^`]+`|\d+)", row.group(2))
        if value:
            stated[row.group(1)] = value.group(1).strip("`")
    assert {"--model", "--ce_label", "--seed", "--n_procs"} <= set(stated)
    for option, value in stated.items():
        assert str(parser.get_default(option[2:])) == value, \
            f"README says {option} defaults to {value}"


def test_help_readme_and_boutiques_describe_the_group_level_that_exists():
    """The group level is implemented: no description may still call it missing, and each names
    what it writes (the help once said 'not implemented yet')."""
    help_text = run_cli("--help").stdout
    descriptor = json.loads((REPO / "gado_bids" / "resources" / "boutiques.json").read_text())
    readme = (REPO / "README.md").read_text()
    for text in (help_text, json.dumps(descriptor), readme):
        assert "not implemented" not in text.lower()
    group_help = help_text.split("  group", 1)[1].split("exit codes")[0]
    assert "similarity" in group_help and "volumes" in group_help and "report" in group_help
    assert "similarity and tissue-volume report" in json.dumps(descriptor)
    assert "## Group level" in readme


def test_training_options_are_the_training_configuration():
    """gadosynth-train's options are TrainConfig's fields with TrainConfig's defaults (one place
    for them), and the configuration is built from them without a hand-written copy."""
    import dataclasses
    from gado_bids.cli.train import build_parser as build_train_parser
    from gado_bids.training.config import TrainConfig
    args = build_train_parser().parse_args(["bids", "work"])
    for field in dataclasses.fields(TrainConfig):
        assert getattr(args, field.name) == getattr(TrainConfig(), field.name), field.name
    args = build_train_parser().parse_args(["bids", "work", "--simulated_enhancement", "0.3",
                                            "--no_blur_matching", "--distribution_loss", "2"])
    assert (args.simulated_fraction, args.blur_matched, args.distribution_weight) == \
        (0.3, False, 2.0)
