"""Registration of the plugin's classes into ESPnet's choice tables."""

import multiprocessing as mp
import subprocess
import sys

import pytest
from espnet2.enh.separator.abs_separator import AbsSeparator
from espnet2.tasks.enh import criterion_choices, separator_choices
from espnet2.train.class_choices import ClassChoices

import espnet2_ext.tasks.enh  # noqa: F401  (registers)
from espnet2_ext.enh.separator.bs_locoformer_separator import BSLocoformerSeparator
from espnet2_ext.registry import ENTRIES, register, register_all

from spawn_target import child_resolves


def test_every_entry_is_registered():
    import espnet2.tasks.enh as enh_task

    for table, key, target in ENTRIES:
        cls = getattr(enh_task, table).get_class(key)
        assert f"{cls.__module__}:{cls.__qualname__}" == target


def test_register_all_is_idempotent_in_a_process():
    before = dict(separator_choices.classes)
    register_all()
    assert separator_choices.classes == before


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register(separator_choices, "bs_locoformer", BSLocoformerSeparator)


def test_espnet_names_are_never_overwritten():
    with pytest.raises(ValueError, match="already registered"):
        register(separator_choices, "rnn", BSLocoformerSeparator)
    assert separator_choices.classes["rnn"] is not BSLocoformerSeparator


def test_upper_case_keys_are_refused():
    table = ClassChoices("toy", classes={}, type_check=AbsSeparator)
    with pytest.raises(ValueError, match="lower case"):
        register(table, "BS_Locoformer", BSLocoformerSeparator)
    assert table.classes == {}


def test_base_class_is_checked():
    with pytest.raises(TypeError, match="must derive from"):
        register(separator_choices, "not_a_separator", dict)
    with pytest.raises(TypeError, match="must derive from"):
        register(criterion_choices, "separator_as_loss", BSLocoformerSeparator)
    assert "not_a_separator" not in separator_choices.classes


def test_spawned_child_process_resolves_our_separator():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child_resolves, args=(queue,))
    proc.start()
    result = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    before, name, module = result
    assert before is False  # the child starts without our classes ...
    assert name == "BSLocoformerSeparator"  # ... and importing the task adds them
    assert module == "espnet2_ext.tasks.enh"


def test_importing_the_package_after_espnet_registers_everything():
    """``import espnet2_ext`` in a process where ESPnet's enh task is already loaded
    registers at once (the other order, import before ESPnet, is checked by the stock
    SeparateSpeech test in tests/train/test_stock_espnet_loading.py)."""
    code = (
        "import espnet2.tasks.enh as t, espnet2.tasks.abs_task as a\n"
        "assert 'bs_locoformer' not in t.separator_choices.classes\n"
        "import espnet2_ext\n"
        "from espnet2_ext.registry import ENTRIES, SCHEDULERS\n"
        "for table, key, _ in ENTRIES:\n"
        "    assert key in getattr(t, table).classes, key\n"
        "for key, _ in SCHEDULERS:\n"
        "    assert key in a.scheduler_classes, key\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_importing_the_package_does_not_import_espnet():
    code = "import sys, espnet2_ext\nprint(any(m.startswith('espnet2.') for m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]
